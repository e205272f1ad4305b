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
from testio_sync.store.db import close_idle_connections, open_store
from testio_sync.sync import runs
from testio_sync.sync.types import SyncOptions, SyncStatus

from .support import wait_until

pytestmark = pytest.mark.faults

CHURN = Path(__file__).with_name("wal_churn.py")


def test_opening_the_store_survives_another_process_deleting_its_wal_files(settings):
    """Short-lived processes make the -wal file come and go: ``open_database`` never fails."""
    open_store(settings)
    wal = settings.db_path.with_name(settings.db_path.name + "-wal")
    child = subprocess.Popen(
        [sys.executable, str(CHURN), str(settings.db_path), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    seen = set()
    try:
        assert child.stdout is not None and child.stdout.readline() == "churning\n"
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            close_idle_connections()  # pooled connections would keep the -wal file
            open_store(settings)
            seen.add(wal.exists())
    finally:
        child.kill()
        child.communicate()
    assert seen == {True, False}, "the -wal file never came and went: nothing was tested"


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

    result = service.execute_sync(options=SyncOptions(force_refresh=True)).wait(30)

    assert result.status == SyncStatus.SUCCEEDED


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
    result = fallback.wait(30)

    assert runs.get_run(running).status == SyncStatus.ABANDONED.value
    assert result.status == SyncStatus.SUCCEEDED
