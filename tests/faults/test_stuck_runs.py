"""Runs that used to stick: every claimed run ends, and no caller waits on a dead one.

Real parts only: the in-process job thread or a ``python -m tasks`` worker, the
test's own SQLite file, the simulator over HTTP. A full disk is SQLite's
``max_page_count`` (a real SQLITE_FULL); a write that must fail on one row only
is a trigger in the test's database that raises the same error text.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sync.support import WITH_BUGS
from testsupport import make_settings

from testio_sync import tasks
from testio_sync.dates import utc_now
from testio_sync.errors import StoreError, SyncError
from testio_sync.mcp_server import WorkerKeeper
from testio_sync.service import SyncService
from testio_sync.store.db import close_database, close_idle_connections, open_store
from testio_sync.sync import runs
from testio_sync.sync.types import SyncStatus
from testio_sync.tasks.sync import pending_run_ids, recover_abandoned

from .support import differences, expected_ids, ids_in, store_problems, wait_until

pytestmark = pytest.mark.faults

FULL = "database or disk is full"


def fail_updates(db_path: Path, name: str, when: str) -> None:
    """A trigger that fails every ``sync_events`` update matching ``when`` as a full disk does."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(
            f"CREATE TRIGGER {name} BEFORE UPDATE ON sync_events WHEN {when} "
            f"BEGIN SELECT RAISE(ABORT, '{FULL}'); END"
        )
        conn.commit()
    finally:
        conn.close()


def drop_trigger(db_path: Path, name: str) -> None:
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(f"DROP TRIGGER {name}")
        conn.commit()
    finally:
        conn.close()


def assert_nothing_active() -> None:
    assert [(row.run_id, row.status) for row in runs.active_runs()] == []


# -- the sync lock path is a directory ----------------------------------------------------


def test_a_lock_path_that_is_a_directory_fails_the_run_here_and_the_next_one_is_new(settings):
    """In process: the run ends ``failed`` naming the path; nothing waits, nothing attaches."""
    service = SyncService(settings)
    settings.lock_path.mkdir()

    result = service.execute_sync(allow_in_process=True).wait(30)

    assert result.status == SyncStatus.FAILED
    assert result.errors == [f"Cannot use the sync lock file {settings.lock_path}: Is a directory"]
    assert_nothing_active()
    settings.lock_path.rmdir()
    again = service.execute_sync(allow_in_process=True)
    assert not again.attached and again.wait(30).status == SyncStatus.SUCCEEDED


def test_a_lock_path_that_is_a_directory_fails_the_run_in_the_worker(settings, worker_pool):
    """In the worker: the same truthful end, and the worker goes on to run the next sync."""
    service = SyncService(settings)
    settings.lock_path.mkdir()  # before the worker starts: it may take the lock at once
    worker_pool(settings).start()

    result = service.execute_sync().wait(30)

    assert result.status == SyncStatus.FAILED
    assert "Is a directory" in result.errors[0] and str(settings.lock_path) in result.errors[0]
    assert_nothing_active()
    settings.lock_path.rmdir()
    assert service.execute_sync().wait(30).status == SyncStatus.SUCCEEDED


# -- a full disk ----------------------------------------------------------------------------


def test_a_full_disk_ends_the_run_naming_the_file_and_a_later_sync_recovers(fresh_server, home):
    """No room for one more page: every error names cache.db and the cause, the run ends."""
    sim, url = fresh_server
    settings = make_settings(home, url)
    service = SyncService(settings)
    db = open_store(settings)
    with db.connection_context():
        pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    close_idle_connections()  # pooled connections opened before would not have the limit
    db.pragma("max_page_count", pages, permanent=True)  # every new connection of this process
    try:
        result = service.execute_sync(WITH_BUGS, allow_in_process=True).wait(60)

        assert result.status == SyncStatus.FAILED  # a full disk stops the run: no use going on
        [error] = result.errors
        assert error.startswith("Cannot save ") and "cannot rollback" not in error
        assert error.endswith(
            f"the disk holding {settings.db_path} is full or the database hit its size limit "
            f"({FULL}); free space"
        )
        assert_nothing_active()

        close_idle_connections()
        db.pragma("max_page_count", 1_000_000_000, permanent=True)  # space freed
        again = service.execute_sync(WITH_BUGS, allow_in_process=True).wait(60)
        assert again.status == SyncStatus.SUCCEEDED, again.errors
        assert store_problems(settings.db_path) == []
        assert differences(ids_in(settings.db_path), expected_ids(sim)) == {}
    finally:
        close_database(settings.db_path)


DISK_FULL = "the disk holding {db} is full or the database hit its size limit ({full}); free space"
FAILING_WRITES = {
    # The first write after the claim: the run must not stay "running".
    "progress": (
        "NEW.progress IS NOT NULL",
        "Cannot record the sync's progress: " + DISK_FULL,
    ),
    # The full result does not fit, the short record does.
    "result": (
        "NEW.result IS NOT NULL",
        "The run succeeded, but its result could not be recorded: "
        "Cannot record the end of the sync run: " + DISK_FULL,
    ),
}


@pytest.mark.parametrize("write", FAILING_WRITES)
def test_a_run_write_that_fails_ends_the_run_failed_with_the_cause(settings, write):
    """A failing progress or result write: the run still ends ``failed`` and says why."""
    when, message = FAILING_WRITES[write]
    service = SyncService(settings)
    fail_updates(settings.db_path, f"no_{write}", when)

    result = service.execute_sync(allow_in_process=True).wait(30)

    assert result.status == SyncStatus.FAILED
    assert result.errors == [message.format(db=settings.db_path, full=FULL)]
    assert_nothing_active()


def test_when_no_end_can_be_written_the_waiter_fails_at_once_here(settings):
    """In process: the job thread dies with the error and ``wait`` raises it instead of hanging."""
    service = SyncService(settings)
    fail_updates(settings.db_path, "no_end", "OLD.status = 'running' AND NEW.status <> 'running'")

    handle = service.execute_sync(allow_in_process=True)
    with pytest.raises(SyncError) as caught:
        handle.wait(60)

    assert f"the disk holding {settings.db_path} is full" in str(caught.value)
    assert "\n" not in str(caught.value)
    drop_trigger(settings.db_path, "no_end")  # the disk has room again
    recover_abandoned(settings)  # the job thread is gone: the run is not left "running"
    assert runs.get_run(handle.run_id).status == SyncStatus.ABANDONED.value
    assert service.execute_sync(allow_in_process=True).wait(30).status == SyncStatus.SUCCEEDED


def test_when_no_end_can_be_written_the_worker_stops_and_the_waiter_sees_why(settings, worker_pool):
    """In the worker: it stops (its run cannot end), the waiter gets the cause, not a hang."""
    service = SyncService(settings)
    workers = worker_pool(settings)
    worker = workers.start()
    fail_updates(settings.db_path, "no_end", "OLD.status = 'running' AND NEW.status <> 'running'")

    handle = service.execute_sync()
    with pytest.raises(StoreError) as caught:
        handle.wait(60)

    assert f"the disk holding {settings.db_path} is full" in str(caught.value)
    assert worker.wait(30) == 0
    assert "its end could not be recorded" in workers.log()
    drop_trigger(settings.db_path, "no_end")
    workers.start()
    assert service.handle(handle.run_id).wait(30).status == SyncStatus.ABANDONED
    assert service.execute_sync().wait(30).status == SyncStatus.SUCCEEDED


# -- a job between the queue and its claim ---------------------------------------------------


def test_a_run_taken_off_the_queue_but_not_yet_claimed_is_not_abandoned(settings, worker_pool):
    """The worker holds the job while its claim waits for SQLite: the run is not lost."""
    service = SyncService(settings)
    run_id, _ = tasks.enqueue_run(service.build_request(), settings)
    writer = sqlite3.connect(settings.db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the worker's claim waits on the busy timeout
    workers = worker_pool(settings)
    worker = workers.start()
    try:
        wait_until(lambda: run_id not in pending_run_ids(), what="the worker to take the job")
        worker.send_signal(signal.SIGSTOP)  # and it stays between dequeue and claim
        writer.execute("ROLLBACK")
        abandoned = recover_abandoned(settings, now=utc_now() + timedelta(seconds=60))
    finally:
        writer.close()
        worker.send_signal(signal.SIGCONT)

    assert abandoned == []
    assert service.handle(run_id).wait(30).status == SyncStatus.SUCCEEDED


def test_a_job_whose_run_was_judged_lost_still_runs_and_says_so(settings, worker_pool):
    """Abandoned by the queue check, then picked up after all: the row follows the job."""
    service = SyncService(settings)
    run_id, _ = tasks.enqueue_run(service.build_request(), settings)
    lost = runs.mark_abandoned(
        now=utc_now() + timedelta(seconds=60), is_pending=lambda _: False
    )  # the verdict of a check that read the queue just after a dequeue
    assert lost == [run_id]
    verdict = runs.get_run(run_id).error

    worker_pool(settings).start()

    wait_until(lambda: runs.get_run(run_id).status == "succeeded", what="the job to run")
    assert runs.get_run(run_id).error is None
    assert verdict == "The queue lost this run's job before a worker took it."


# -- one worker, several servers ------------------------------------------------------------


def test_a_shared_worker_outlives_the_server_that_started_it(fresh_server, home):
    """The starter exits mid-sync: the run still succeeds; the worker stops after the last user."""
    sim, url = fresh_server
    settings = make_settings(home, url, refresh_interval_s=0)
    service = SyncService(settings)
    first, second = WorkerKeeper(settings), WorkerKeeper(settings)
    assert first.ensure() is True
    worker = first.process
    assert worker is not None
    try:
        assert second.ensure() is False
        sim.update_faults(latency_ms=50)
        handle = service.execute_sync(WITH_BUGS)
        wait_until(lambda: handle.poll().status == SyncStatus.RUNNING, what="the sync to start")

        first.stop()  # the server that started the worker exits

        result = handle.wait(120)
        assert result.status == SyncStatus.SUCCEEDED, result.errors
        assert worker.poll() is None, "the worker stopped while a server still uses it"
        second.stop()  # the last server exits: the idle worker stops by itself
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert differences(ids_in(settings.db_path), expected_ids(sim)) == {}


def test_a_server_that_died_without_unregistering_does_not_keep_the_worker(settings):
    """A user entry of a dead process is ignored and removed."""
    from testio_sync.tasks.users import live_users, register_user, unregister_user

    entry = register_user(settings)
    dead = entry.with_name(f"{2**22 + 1}-1-deadbeef")  # no such PID
    entry.rename(dead)

    assert live_users(settings) == []
    assert not dead.exists()
    alive = register_user(settings)
    assert live_users(settings) == [os.getpid()]
    unregister_user(alive)
    assert live_users(settings) == []


def test_the_cli_on_a_full_disk_names_the_cause_and_exits_1(settings):
    """``testio-sync sync``: no "cannot rollback", the disk named once, exit 1."""
    from typer.testing import CliRunner

    from testio_sync.cli import app

    db = open_store(settings)
    with db.connection_context():
        pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    db.pragma("max_page_count", pages, permanent=True)
    try:
        done = CliRunner(env=settings.to_env()).invoke(app, ["sync", "--quiet"])
    finally:
        close_database(settings.db_path)

    assert done.exit_code == 1
    assert "cannot rollback" not in done.output
    assert done.output.count(f"the disk holding {settings.db_path} is full") == 1
