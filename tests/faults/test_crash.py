"""SIGKILL of a real worker at eleven moments of a sync; a new worker then recovers on its own."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sync.support import WITH_BUGS
from testsupport import TOKEN, make_settings

from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.sync import runs
from testio_sync.sync.pg_lock import lock_holder
from testio_sync.sync.types import SyncOptions, SyncStatus

from .support import (
    LOCKED,
    Workers,
    differences,
    expected_ids,
    ids_in,
    problems_in,
    store_count,
    store_ids,
    store_problems,
    wait_until,
)

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("store_backend")]

LATENCY_MS = 60  # every moment below lasts long enough to be seen by a 5 ms poll


@pytest.fixture(scope="module")
def seed_server() -> Iterator[tuple[Simulator, str]]:
    """The ``seed`` customer (6 products, 724 tests, 8,056 bugs), never advanced here."""
    sim = Simulator(scale="seed", seed=1, token=TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


@dataclass
class Moment:
    """When to kill: ``reached(settings, progress)`` is polled while the run is running."""

    name: str
    reached: Callable[[Settings, dict[str, Any]], bool]
    nuke: bool = False


def in_phase(phase: str) -> Callable[[Settings, dict[str, Any]], bool]:
    return lambda settings, progress: progress.get("phase") == phase


def progress_at(key: str, value: int) -> Callable[[Settings, dict[str, Any]], bool]:
    return lambda settings, progress: progress.get(key, 0) >= value


def rows_at(table: str, count: int) -> Callable[[Settings, dict[str, Any]], bool]:
    return lambda settings, progress: store_count(settings, table) >= count


def backup_written(settings: Settings, progress: dict[str, Any]) -> bool:
    return any(settings.backups_dir.glob("*.db"))


def fetching_features(settings: Settings, progress: dict[str, Any]) -> bool:
    """Products stored, no test page yet: only features are in flight."""
    return store_count(settings, "products") > 0 and store_count(settings, "tests") == 0


def wiped_and_refilling(settings: Settings, progress: dict[str, Any]) -> bool:
    tests = store_count(settings, "tests")
    return backup_written(settings, progress) and 0 < tests < 700


MOMENTS = [
    Moment("products phase", in_phase("products")),
    Moment("features phase", fetching_features),
    Moment("new_tests phase", in_phase("new_tests")),
    Moment("bugs phase", rows_at("bugs", 1)),
    Moment("a page write (first tests stored)", rows_at("tests", 1)),
    Moment("a page write (150 tests stored)", rows_at("tests", 150)),
    Moment("10 pages walked", progress_at("pages", 10)),
    Moment("400 tests found", progress_at("tests_found", 400)),
    # The store's own count: progress rows are written at most every 0.2 s, and the
    # bugs past 4,000 can be stored faster than that.
    Moment("4,000 bugs stored", rows_at("bugs", 4000)),
    Moment("a nuke, after the backup", backup_written, nuke=True),
    Moment("a nuke, wiped and refilling", wiped_and_refilling, nuke=True),
]


def kill_when(
    workers: Workers, worker: subprocess.Popen[bytes], run_id: str, moment: Moment
) -> None:
    """SIGKILL ``worker`` once ``moment`` is reached while ``run_id`` is still running."""

    def reached() -> bool:
        row = runs.get_run(run_id)
        assert row.status in ("queued", "running"), f"run ended before {moment.name}"
        return row.status == "running" and moment.reached(workers.settings, row.progress or {})

    wait_until(reached, what=moment.name)
    workers.kill(worker)


@pytest.mark.parametrize("moment", MOMENTS, ids=[m.name for m in MOMENTS])
def test_a_worker_killed_mid_sync_leaves_a_store_the_next_worker_recovers_without_help(
    moment: Moment, seed_server, home: Path, worker_pool
):
    """The killed run ends ``abandoned``, the lock frees itself, the resync equals the truth."""
    sim, url = seed_server
    settings = make_settings(home, url, refresh_interval_s=0, lock_timeout_s=30.0)
    if moment.nuke and settings.database_url is not None:
        pytest.skip("a nuke's backup is a copy of the SQLite file (store/backups.py)")
    sim.update_faults(latency_ms=0)
    service = SyncService(settings)
    workers = worker_pool(settings)
    worker = workers.start()
    before: dict[str, set[Any]] | None = None
    if moment.nuke:
        assert service.execute_sync(WITH_BUGS).wait(60).succeeded
        before = store_ids(settings)

    sim.update_faults(latency_ms=LATENCY_MS)
    options = SyncOptions(nuke=True) if moment.nuke else SyncOptions()
    killed = service.execute_sync(WITH_BUGS, options=options).run_id
    kill_when(workers, worker, killed, moment)
    sim.update_faults(latency_ms=0)

    # The kernel (file lock) or the server (advisory lock) freed the lock with the process.
    holder = lock_holder(settings, live_only=False)
    assert holder is not None and holder["run_id"] == killed
    assert holder["stale"] in ("holder is dead", "holder is dead (its database session ended)")
    assert problems_in(settings) == []
    if before is not None:
        # The user keeps their data: still in place, or in the backup written first.
        kept = store_ids(settings)
        if kept != before:
            backup = max(settings.backups_dir.glob("*.db"), key=lambda p: p.stat().st_mtime)
            assert store_problems(backup) == [] and ids_in(backup) == before

    workers.start()
    result = service.execute_sync(WITH_BUGS).wait(60)

    assert runs.get_run(killed).status == SyncStatus.ABANDONED.value
    assert result.status == SyncStatus.SUCCEEDED, result.errors
    assert lock_holder(settings, live_only=False) is None
    assert problems_in(settings) == []
    assert differences(store_ids(settings), expected_ids(sim)) == {}
    assert LOCKED not in workers.log()
