"""Real simulators on 127.0.0.1 for the simulator's own contract tests.

Read-only tests share one server per module; tests that move the clock, set
faults or count requests get a fresh simulator from ``start_simulator``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from testio_sync.simulator import Simulator, SimulatorServer

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
TOKEN = "test-token"


class Running:
    """A served simulator with an authenticated client and a control client."""

    def __init__(self, sim: Simulator, server: SimulatorServer) -> None:
        self.sim = sim
        self.server = server
        self.api = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Token {TOKEN}"}, timeout=10
        )
        self.control = httpx.Client(base_url=f"{server.root_url}/_simulator", timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        """GET a contract path and return its JSON, failing on anything but 200."""
        response = self.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def tests_of(self, product_id: int) -> list[dict[str, Any]]:
        """Every test of a product, walked page by page (25 per page) to the end."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            batch = self.get(f"/products/{product_id}/exploratory_tests", page=page, per_page=25)
            found += batch["exploratory_tests"]
            if len(batch["exploratory_tests"]) < 25:
                return found
            page += 1

    def close(self) -> None:
        self.api.close()
        self.control.close()
        self.server.stop()


def _start(**kwargs: Any) -> Running:
    options = {"scale": "tiny", "seed": 3, "token": TOKEN, "now": NOW, **kwargs}
    sim = Simulator(**options)
    return Running(sim, sim.serve())


@pytest.fixture(scope="session")
def start_time() -> datetime:
    """The fixed start of the simulated clock, so runs do not depend on today's date."""
    return NOW


@pytest.fixture(scope="module")
def tiny() -> Iterator[Running]:
    """A shared tiny simulator; tests using it must not change it."""
    running = _start()
    yield running
    running.close()


@pytest.fixture(scope="module")
def seed_scale() -> Iterator[Running]:
    """A shared seed-scale simulator; tests using it must not change it."""
    running = _start(scale="seed", seed=1)
    yield running
    running.close()


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., Running]]:
    """Start fresh simulators (``Simulator`` keyword arguments); all stop after the test."""
    started: list[Running] = []

    def start(**kwargs: Any) -> Running:
        running = _start(**kwargs)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()
