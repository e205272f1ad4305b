"""Running the simulator in the foreground until SIGINT or SIGTERM (the CLI's ``simulate``).

The server runs in its usual daemon thread while the calling thread waits on
an event that the signal handlers set, so both signals end the process the
same clean way, with exit status 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from types import FrameType

from testio_sync.simulator.faults import FaultConfig
from testio_sync.simulator.simulator import Simulator

logger = logging.getLogger(__name__)


def announce_on_stdout(base_url: str) -> None:
    """The one line scripts parse to find the server."""
    print(f"Simulator listening on {base_url}", flush=True)


def run_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    scale: str = "seed",
    seed: int = 1,
    token: str = "demo-token",
    latency_ms: float = 0,
    now: datetime | None = None,
    products: int | None = None,
    tests: int | None = None,
    bugs: int | None = None,
    features: int | None = None,
    faults: FaultConfig | None = None,
    announce: Callable[[str], None] = announce_on_stdout,
    stop: threading.Event | None = None,
) -> None:
    """Serve a simulator until SIGINT/SIGTERM (or until ``stop`` is set).

    ``announce`` gets the base URL once the port accepts connections.

    Raises:
        ValueError: a bad scale, count or fault value.
        OSError: the address cannot be bound.
    """
    stop = stop or threading.Event()
    simulator = Simulator(
        scale=scale,
        seed=seed,
        token=token,
        latency_ms=latency_ms,
        now=now,
        products=products,
        tests=tests,
        bugs=bugs,
        features=features,
        faults=faults,
    )
    with simulator.serve(host=host, port=port) as server, _stop_on_signals(stop):
        logger.info("simulating scale=%s seed=%s now=%s", scale, seed, simulator.now.isoformat())
        announce(server.base_url)
        while not stop.wait(0.2):
            if not server.running:
                logger.error("the simulator server stopped unexpectedly")
                break


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Let SIGINT and SIGTERM set ``stop`` (main thread only); the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("received signal %s, stopping", signum)
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
