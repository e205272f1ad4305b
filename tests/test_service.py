"""SyncService through the real huey queue: one run at a time, attachment, the schedule.

Every test that uses a queue runs on each backend: SQLite, Redis and PostgreSQL.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
from testsupport import make_settings, start_consumer, stop_consumer

from testio_sync import tasks
from testio_sync.errors import SyncError, UsageError
from testio_sync.service import SyncService
from testio_sync.store.models import SyncEvent, database
from testio_sync.sync import runs
from testio_sync.sync.schedule import is_sync_due
from testio_sync.sync.types import (
    DEFAULT_PHASES,
    SyncOptions,
    SyncPhase,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)

pytestmark = pytest.mark.usefixtures("store_backend")  # each test on both stores


T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(home, tiny_server, queue_url):
    return make_settings(home, tiny_server[1], queue_url=queue_url)


def test_execute_sync_enqueues_a_job_that_the_worker_runs(settings, consumer):
    service = SyncService(settings)
    handle = service.execute_sync()
    assert not handle.attached and not handle.in_process
    result = handle.wait(60)
    assert result.status == SyncStatus.SUCCEEDED
    row = runs.get_run(handle.run_id)
    assert row.owner_pid is not None and row.in_process is False
    assert row.result["run_id"] == handle.run_id


def test_concurrent_calls_attach_to_a_covering_run_and_never_run_two_syncs_at_once(
    fresh_server, home, queue_url
):
    """Three callers at once: equal and narrower requests attach, a broader one queues."""
    sim, url = fresh_server
    sim.update_faults(latency_ms=30)
    settings = make_settings(home, url, queue_url=queue_url)
    service = SyncService(settings)
    one = sorted(sim.world.products)[0]
    requests = [
        {},
        {},
        {"scope": SyncScope(product_ids=(one,))},
        {"phases": [*DEFAULT_PHASES, SyncPhase.BUGS]},
    ]
    handles: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def call(i: int) -> None:
        barrier.wait()
        handles[i] = service.execute_sync(**requests[i])

    worker = start_consumer(settings)
    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        results = [h.wait(60) for h in handles]
    finally:
        stop_consumer(worker, settings)
    assert all(r.status == SyncStatus.SUCCEEDED for r in results)
    run_ids = {h.run_id for h in handles}
    # Arrival order decides how many runs: the broadest first covers all (one run);
    # the narrow scoped one first leaves room for a full run and a run with bugs (three).
    assert len(run_ids) in (1, 2, 3)
    assert sum(h.attached for h in handles) == len(handles) - len(run_ids)
    for handle, asked in zip(handles, requests, strict=True):
        ran = runs.request_of(runs.get_run(handle.run_id))
        assert ran.covers(service.build_request(**asked))
    with database.connection_context():
        rows = list(SyncEvent.select().order_by(SyncEvent.started_at))
    assert len(rows) == len(run_ids)
    for earlier, later in itertools.pairwise(rows):
        assert earlier.finished_at <= later.started_at  # one at a time


def test_a_caller_waiting_on_an_attached_run_gets_the_same_result(settings, consumer):
    service = SyncService(settings)
    first = service.execute_sync()
    second = service.execute_sync()
    assert second.run_id == first.run_id and second.attached
    assert first.wait(60).to_dict() == second.wait(60).to_dict()


def test_without_a_worker_execute_sync_refuses_unless_in_process_is_allowed(settings):
    service = SyncService(settings)
    assert not service.worker_alive()
    with pytest.raises(SyncError, match="testio-sync worker"):
        service.execute_sync()
    handle = service.execute_sync(allow_in_process=True)
    assert handle.in_process
    assert handle.wait(60).status == SyncStatus.SUCCEEDED


def test_the_worker_is_seen_alive_while_it_runs_and_not_after(settings):
    service = SyncService(settings)
    assert not service.worker_alive()
    worker = start_consumer(settings)
    try:
        assert service.worker_alive()
        assert service.execute_sync().wait(60).status == SyncStatus.SUCCEEDED
    finally:
        stop_consumer(worker, settings)
    assert not service.worker_alive()


def test_unknown_product_ids_are_refused_before_anything_is_enqueued(settings):
    service = SyncService(settings)
    service.execute_sync(allow_in_process=True).wait(60)
    with pytest.raises(UsageError, match="Unknown product"):
        service.execute_sync(scope=SyncScope(product_ids=(999999,)), allow_in_process=True)
    with database.connection_context():
        assert SyncEvent.select().count() == 1


@pytest.mark.parametrize(
    ("last", "now", "interval", "failures", "last_failure", "due"),
    [
        (None, T0, 3600, 0, None, True),  # never synced
        (T0, T0 + timedelta(minutes=59), 3600, 0, None, False),
        (T0, T0 + timedelta(minutes=60), 3600, 0, None, True),  # boundary: due
        (T0, T0 + timedelta(days=9), 0, 0, None, False),  # 0 disables
        (None, T0 + timedelta(seconds=59), 3600, 1, T0, False),  # one failure: wait 60 s
        (None, T0 + timedelta(seconds=60), 3600, 1, T0, True),
        (None, T0 + timedelta(seconds=200), 3600, 3, T0, False),  # three: wait 240 s
        (None, T0 + timedelta(seconds=240), 3600, 3, T0, True),
        (None, T0 + timedelta(minutes=59), 3600, 12, T0, False),  # capped at the interval
        (None, T0 + timedelta(minutes=60), 3600, 12, T0, True),
    ],
)
def test_is_sync_due_follows_the_interval_and_backs_off_after_failures(
    last, now, interval, failures, last_failure, due
):
    assert (
        is_sync_due(
            now=now,
            last_completed=last,
            interval_s=interval,
            failures=failures,
            last_failure_at=last_failure,
        )
        is due
    )


def test_the_periodic_check_enqueues_when_due_and_skips_after_a_fresh_full_sync(settings):
    """Explicit timestamps drive the decision; a manual full sync resets the timer."""
    service = SyncService(settings)
    now = datetime.now(UTC)
    run_id = tasks.check_background_sync(settings, now=now)
    assert run_id is not None
    row = runs.get_run(run_id)
    assert row.trigger == SyncTrigger.SCHEDULER.value and row.status == "queued"
    assert tasks.check_background_sync(settings, now=now) is None  # one is already queued
    with database.connection_context():
        SyncEvent.delete().execute()  # forget the queued job: this test runs no worker
    result = service.execute_sync(allow_in_process=True).wait(60)
    assert result.status == SyncStatus.SUCCEEDED
    later = result.finished_at + timedelta(seconds=settings.refresh_interval_s - 1)
    assert tasks.check_background_sync(settings, now=later) is None
    due = result.finished_at + timedelta(seconds=settings.refresh_interval_s + 1)
    assert tasks.check_background_sync(settings, now=due) is not None


def test_the_periodic_task_runs_a_background_sync_through_the_worker(settings, consumer):
    run_id = tasks.check_background_sync(settings, now=datetime.now(UTC))
    handle = SyncService(settings).handle(run_id)
    result = handle.wait(60)
    assert result.status == SyncStatus.SUCCEEDED
    assert result.trigger == SyncTrigger.SCHEDULER
    assert runs.last_sync_completed() is not None


def test_a_waiter_attached_to_a_run_whose_process_died_gets_abandoned_not_a_hang(settings):
    """The owner dies without a word: the waiter sees ``abandoned`` within a few seconds."""
    from testio_sync.dates import utc_now
    from testio_sync.sync.types import SyncRequest

    service = SyncService(settings)
    run_id, _ = runs.create_or_attach(SyncRequest(), run_id="gone0001", now=utc_now(), enqueue=None)
    with database.connection_context():
        SyncEvent.update(status="running", owner_pid=2**22 + 11, in_process=True).where(
            SyncEvent.run_id == run_id
        ).execute()
    result = service.handle(run_id).wait(timeout_s=10)
    assert result.status == SyncStatus.ABANDONED
    assert result.errors


def test_without_a_worker_a_run_left_queued_for_a_worker_is_run_here(settings):
    """The worker died with a job queued: the next in-process sync runs that job itself."""
    service = SyncService(settings)
    worker = start_consumer(settings)
    stop_consumer(worker, settings)  # gone, as after a crash
    run_id, _ = tasks.enqueue_run(service.build_request(), settings)
    handle = service.execute_sync(allow_in_process=True)
    assert handle.run_id == run_id and handle.attached and handle.in_process
    assert handle.wait(60).status == SyncStatus.SUCCEEDED
    assert runs.get_run(run_id).in_process is False  # ran as the queued run it was


def test_a_nuke_run_by_the_worker_writes_the_backup_its_request_names(settings, consumer):
    """The path a preview announced travels through the queue; no second backup is made."""
    service = SyncService(settings)
    assert service.execute_sync().wait(60).status == SyncStatus.SUCCEEDED
    named = settings.backups_dir / "cache-before-nuke-announced.db"
    handle = service.execute_sync(options=SyncOptions(nuke=True, backup_path=str(named)))
    assert not handle.in_process
    result = handle.wait(60)
    assert result.status == SyncStatus.SUCCEEDED, result.errors
    assert result.backup_path == str(named)
    assert list(settings.backups_dir.glob("*.db")) == [named]
