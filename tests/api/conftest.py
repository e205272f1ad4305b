"""A real simulator on 127.0.0.1 for the API tests that cross the wire.

Each test gets its own simulator (about 0.2 s to start and stop), so fault
switches, request counters and the fault layer's seeded random stream never
leak from one test into another.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from testio_sync.api import ApiClient, RetryPolicy
from testio_sync.simulator import Simulator

SIM_TOKEN = "test-token"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class Served:
    """A served simulator and a way to build clients for it."""

    def __init__(self, sim: Simulator, base_url: str) -> None:
        self.sim = sim
        self.base_url = base_url

    def client(self, **kw: Any) -> ApiClient:
        """A client for this simulator with tiny retry delays; keywords override."""
        kw.setdefault(
            "retry", RetryPolicy(max_attempts=6, base_delay_s=0.01, max_delay_s=0.05, max_wait_s=2)
        )
        return ApiClient(self.base_url, SIM_TOKEN, **kw)


@pytest.fixture
def served() -> Iterator[Served]:
    """A tiny world (120 tests: the largest product spans three 25-test pages), no faults."""
    sim = Simulator(scale="tiny", seed=1, token=SIM_TOKEN, latency_ms=0, now=NOW, tests=120)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield Served(sim, server.base_url)
