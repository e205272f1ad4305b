"""Hazards between processes sharing one data directory: WAL files, the queue, dead workers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sync.support import WITH_BUGS
from testsupport import make_settings

from testio_sync.service import SyncService
from testio_sync.store import runs
from testio_sync.store.db import open_database
from testio_sync.sync.types import SyncOptions, SyncStatus

from .support import wait_until

pytestmark = pytest.mark.faults

CHURN = Path(__file__).with_name("wal_churn.py")


@pytest.mark.xfail(
    strict=True,
    raises=FileNotFoundError,
    reason="store/db.py _private_sidecars: exists() then chmod() races with another process "
    "deleting the -wal/-shm files (/tmp/testio-notes/faults.md)",
)
def test_opening_the_store_survives_another_process_deleting_its_wal_files(settings):
    """A CLI process opening and closing the store meanwhile must not make open_database fail."""
    open_database(settings.db_path)
    child = subprocess.Popen(
        [sys.executable, str(CHURN), str(settings.db_path), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "churning\n"
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            open_database(settings.db_path)
    finally:
        child.kill()
        child.communicate()


@pytest.mark.xfail(
    strict=True,
    reason="tasks/queue.py configure() re-touches queue.db (os.open/os.close) while this "
    "process has it open, dropping SQLite's POSIX locks (/tmp/testio-notes/faults.md)",
)
def test_a_second_service_in_one_process_keeps_its_jobs_visible_to_a_restarted_worker(
    settings, worker_pool
):
    """Two ``SyncService`` objects in one process, a worker restart: the next run still runs."""
    service = SyncService(settings)
    workers = worker_pool(settings)
    worker = workers.start()
    assert service.execute_sync().wait(30).succeeded
    SyncService(settings)  # e.g. a library user's second service, or a CLI command run in-process
    worker.terminate()
    worker.wait(10)
    workers.start()

    result = service.execute_sync(options=SyncOptions(force_refresh=True)).wait(10)

    assert result.status == SyncStatus.SUCCEEDED


@pytest.mark.xfail(
    strict=True,
    reason="service.py execute_sync without a worker attaches to a run queued for the "
    "dead worker and waits for ever (/tmp/testio-notes/faults.md)",
)
def test_without_a_worker_a_sync_runs_the_job_a_killed_worker_left_queued(
    fresh_server, home, worker_pool
):
    """A run queued behind the one a killed worker was running: the in-process fallback runs it."""
    sim, url = fresh_server
    sim.update_faults(latency_ms=100)
    settings = make_settings(home, url, refresh_interval_s=0)
    service = SyncService(settings)
    workers = worker_pool(settings)
    worker = workers.start()
    running = service.execute_sync().run_id
    wait_until(lambda: runs.get_run(running).status == "running", what="the first run to start")
    queued = service.execute_sync(WITH_BUGS)
    assert not queued.attached and runs.get_run(queued.run_id).status == "queued"
    workers.kill(worker)
    sim.update_faults(latency_ms=0)

    fallback = service.execute_sync(WITH_BUGS, allow_in_process=True)
    result = fallback.wait(10)

    assert runs.get_run(running).status == SyncStatus.ABANDONED.value
    assert result.status == SyncStatus.SUCCEEDED
