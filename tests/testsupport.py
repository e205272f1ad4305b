"""Constants and builders shared by test modules (imported as ``testsupport``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testio_sync.settings import Secret, Settings
from testio_sync.simulator import Simulator

TOKEN = "test-token-0123456789"

# The store of the running test: None is the SQLite file in its home; a PostgreSQL URL
# while a test runs on PostgreSQL (set by the ``store_backend`` fixture).
STORE_URL: str | None = None


def make_settings(home: Path, base_url: str, **overrides: object) -> Settings:
    options: dict[str, object] = {
        "home": home,
        "api_base_url": base_url,
        "api_token": Secret(TOKEN),
        "http_timeout_s": 5.0,
        "lock_timeout_s": 5.0,
        "retry_max_wait_s": 2.0,
    }
    if STORE_URL is not None:
        options["database_url"] = Secret(STORE_URL)
    options.update(overrides)
    return Settings(**options)  # type: ignore[arg-type]


def server_env(home: Path, server: tuple[Any, str]) -> dict[str, str]:
    """The variables of a ``testio-sync`` process on ``home`` against a running simulator."""
    sim, base_url = server
    return {
        "TESTIO_SYNC_HOME": str(home),
        "TESTIO_CUSTOMER_API_BASE_URL": base_url,
        "TESTIO_CUSTOMER_API_TOKEN": sim.token,
        "TESTIO_HTTP_TIMEOUT_SECONDS": "5",
        # No background sync: the first sync_data call must be the run that finds every test.
        "TESTIO_REFRESH_INTERVAL_SECONDS": "0",
        "TESTIO_SYNC_DATABASE_URL": STORE_URL or "",
    }


def wait_for(condition: Callable[[], object], *, timeout_s: float = 10.0, what: str = "") -> None:
    """Wait until ``condition()`` is true, polling; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


def start_consumer(settings: Settings) -> object:
    """A real huey consumer (threads) in this process, returned once it is alive."""
    from testio_sync.tasks.consumer import build_consumer
    from testio_sync.tasks.liveness import worker_alive

    worker = build_consumer(
        settings, periodic=False, initial_delay=0.01, max_delay=0.05, flush_locks=True
    )
    worker._set_signal_handlers = lambda: None  # start() outside the main thread's signals
    worker.start()
    wait_for(lambda: worker_alive(settings.worker_lock_path), what="the worker to start")
    return worker


def stop_consumer(worker: object, settings: Settings) -> None:
    from testio_sync.tasks.liveness import release_worker_lock

    worker.stop(graceful=True)  # type: ignore[attr-defined]
    release_worker_lock(settings.worker_lock_path)


def stored_text(home: Path) -> str:
    """Everything the test's store holds, as text: the SQLite file's bytes, or every row
    of every table of the PostgreSQL schema (to look for what must never be stored)."""
    if STORE_URL is None:
        return (home / "cache.db").read_bytes().decode("latin-1")
    import psycopg

    with psycopg.connect(STORE_URL, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "select table_name from information_schema.tables"
                " where table_schema = current_schema()"
            )
        ]
        return "\n".join(
            str(row[0])
            for table in tables
            for row in conn.execute(f'select t::text from "{table}" t')
        )


def drop_products(sim: Simulator, product_ids: list[int]) -> None:
    """Delete products upstream, with their tests, bugs and features."""
    with sim.lock:
        world = sim.world
        for pid in product_ids:
            for tid in list(world.ordered_test_ids(pid)):
                world.remove_test(tid)
            for fid in world.features_by_product.pop(pid):
                del world.features[fid]
            del world.products[pid]
        world.invalidate_order()
