"""``Simulator``: one simulated TestIO customer, controllable from Python and over HTTP.

It owns the world, its clock, the fault switches and the request counters,
and hands the same object to every server it starts, so direct calls (from a
test) and control requests (from a script) have exactly the same effects.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette

from testio_sync.simulator.app import build_app
from testio_sync.simulator.clock import Evolution
from testio_sync.simulator.dataset import generate_world, resolve_scale
from testio_sync.simulator.endpoints import ContractApi
from testio_sync.simulator.faults import FaultConfig, FaultState
from testio_sync.simulator.render import Renderer
from testio_sync.simulator.server import SimulatorServer
from testio_sync.simulator.stats import RequestStats
from testio_sync.simulator.world import World


def start_of_utc_day() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class Simulator:
    """A seeded, deterministic TestIO Customer API.

    ``scale`` is ``tiny``, ``seed`` or ``large``; ``products``, ``tests``, ``bugs``
    and ``features`` override its counts. ``now`` (aware) starts the simulated
    clock, by default at the start of the current UTC day. ``latency_ms`` and
    ``faults`` are the start-up faults (``clear_faults`` removes them too).

    Raises:
        ValueError: an unknown scale, a bad count or a naive ``now``.
    """

    def __init__(
        self,
        scale: str = "tiny",
        seed: int = 1,
        token: str = "test-token",
        latency_ms: float = 0,
        now: datetime | None = None,
        *,
        products: int | None = None,
        tests: int | None = None,
        bugs: int | None = None,
        features: int | None = None,
        faults: FaultConfig | None = None,
    ) -> None:
        start = now or start_of_utc_day()
        if start.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        spec = resolve_scale(scale, products=products, tests=tests, bugs=bugs, features=features)
        self.scale = scale
        self.seed = seed
        self.token = token
        self.lock = threading.RLock()
        self._world = generate_world(spec, seed, int(start.timestamp()))
        self._evolution = Evolution(self._world, spec.history_days)
        self._renderer = Renderer(self._world)
        self.api = ContractApi(self._world, self._renderer)
        self.stats_counter = RequestStats()
        self.fault_state = FaultState(seed)
        initial = faults or FaultConfig()
        if latency_ms:
            initial = initial.updated({"latency_ms": latency_ms})
        self.set_faults(initial)
        self._app: Starlette | None = None

    @property
    def world(self) -> World:
        """The live data; read it under ``sim.lock`` while a server may be advancing it."""
        return self._world

    @property
    def now(self) -> datetime:
        with self.lock:
            return self._world.now_datetime

    @property
    def faults(self) -> FaultConfig:
        return self.fault_state.config

    def advance(self, hours: float) -> dict[str, Any]:
        """Move the clock by ``hours``; returns the new ``now`` and a summary of what changed.

        Raises:
            ValueError: negative ``hours`` or more than a year at once.
        """
        with self.lock:
            summary = self._evolution.advance(hours)
            self._renderer.clear()
            return summary

    def set_faults(self, config: FaultConfig) -> FaultConfig:
        with self.lock:
            archived = [tid for tid, t in self._world.tests.items() if t.status == "archived"]
        self.fault_state.set(config, archived)
        return config

    def update_faults(self, **changes: Any) -> FaultConfig:
        """Change some fault fields, keep the others.

        Raises:
            ValueError: an unknown field or a bad value.
        """
        return self.set_faults(self.faults.updated(changes))

    def clear_faults(self) -> FaultConfig:
        return self.set_faults(FaultConfig())

    def describe_faults(self) -> dict[str, Any]:
        """The fault config as JSON, plus the broken test ids it resolved to."""
        return self.fault_state.describe()

    def truth(self) -> dict[str, Any]:
        with self.lock:
            return self._world.truth()

    def stats(self) -> dict[str, Any]:
        return self.stats_counter.to_dict()

    def reset_stats(self) -> None:
        self.stats_counter.reset()

    @property
    def app(self) -> Starlette:
        """The ASGI app serving this simulator (also usable with ``httpx.ASGITransport``)."""
        if self._app is None:
            self._app = build_app(self)
        return self._app

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
        """Start serving in a daemon thread; returns once the port accepts connections.

        Use it as a context manager, or call ``stop()`` on the result.

        Raises:
            OSError: the address cannot be bound.
        """
        return SimulatorServer(self.app, host=host, port=port).start()
