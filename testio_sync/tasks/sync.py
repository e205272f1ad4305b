"""The huey tasks: run one sync job, and the periodic background-sync check.

Both are thin: the job calls ``testio_sync.sync.runner.run_job``; the periodic
task asks ``is_sync_due`` and enqueues an ordinary run with trigger
``scheduler``, so a background sync is the same job as a CLI or MCP one.

Several workers may share one queue (Redis, PostgreSQL): a worker that finds
another one's job running on this data directory puts its job back in the queue
rather than wait on the sync lock, and each periodic decision is claimed in the
queue's store, so however many workers run the periodic task, one enqueues.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from datetime import datetime

from huey import crontab

from testio_sync.dates import utc_now
from testio_sync.settings import Settings
from testio_sync.store.db import open_store
from testio_sync.sync import runs
from testio_sync.sync.account import request_account
from testio_sync.sync.runner import run_job
from testio_sync.sync.schedule import is_sync_due
from testio_sync.sync.types import SyncRequest, SyncScope, SyncTrigger
from testio_sync.tasks.consumer import stop_worker
from testio_sync.tasks.liveness import (
    exclusive,
    hold_worker_lock,
    hold_worker_slot,
    release_worker_lock,
    set_worker_job,
    worker_jobs,
)
from testio_sync.tasks.presence import Beating
from testio_sync.tasks.queue import claim_once, current_settings, huey, peek, put, queue_is_shared

logger = logging.getLogger("testio_sync.worker")
SECOND_LOOK_S = 0.05
REQUEUE_PAUSE_S = 0.5  # a job put back because another worker's job runs waits this long first
LAST_CLAIM_KEY = "background-sync:last-claim"
ABANDON_WATCH_S = 2.0  # how often a worker on a shared queue looks for runs of dead workers
_told_waiting: set[str] = set()  # runs whose wait this worker has logged once
_watch_stop: threading.Event | None = None  # set to stop this worker's abandon watch
_beating: Beating | None = None  # this worker's heartbeat in a shared queue


def new_run_id() -> str:
    return secrets.token_hex(6)


@huey.task(retries=0)
def run_sync_job(run_id: str) -> None:
    """Run a queued sync; its outcome goes to ``sync_events``.

    The first thing it does is say so in the worker lock file: the job has left
    the queue, and until it claims its row only that record shows it is not lost.
    Another worker's job running here: back to the queue (the run stays queued),
    so it waits its turn there instead of failing on the sync lock's timeout.
    """
    settings = current_settings()
    set_worker_job(settings.worker_lock_path, run_id)
    try:
        with exclusive(settings.home / "job.lock") as ours:
            if ours:
                asyncio.run(run_job(run_id, settings))
                return
        # Back in the queue before the record is cleared: the job is never in neither.
        run_sync_job(run_id)
    except runs.RunNotRecordedError as exc:
        # The row still says "running" and this worker owns it: only the worker's
        # end lets waiters see the run abandoned instead of waiting for ever.
        logger.critical("%s; the worker stops, as it cannot record runs", exc)
        stop_worker()
        return
    finally:
        set_worker_job(settings.worker_lock_path, None)
    if run_id not in _told_waiting:
        _told_waiting.add(run_id)
        logger.info("run %s waits in the queue: another worker's sync runs", run_id)
    time.sleep(REQUEUE_PAUSE_S)


def enqueue_run(request: SyncRequest, settings: Settings) -> tuple[str, bool]:
    """Attach to a covering queued/running run, or record a new one and enqueue it."""
    open_store(settings)
    return runs.create_or_attach(
        request, run_id=new_run_id(), now=utc_now(), enqueue=lambda rid: run_sync_job(rid)
    )


def pending_run_ids() -> set[str]:
    """Run ids whose job is still waiting in the queue."""
    return {str(task.args[0]) for task in huey.pending() if task.args}


def recover_abandoned(settings: Settings, *, now: datetime | None = None) -> list[str]:
    """Mark runs whose process died as abandoned (at worker start and before a sync).

    A queued run counts as lost only when its job is neither in the queue nor
    being executed; the worker's record is read after the queue, because the
    worker takes the job off the queue before it writes that record.
    """
    open_store(settings)
    pending: set[str] | None = None

    reread = False

    def is_pending(run_id: str) -> bool:
        nonlocal pending, reread
        if pending is None:  # read after the rows, and only when a queued row needs it
            pending = pending_run_ids()
        if run_id in pending or run_id in worker_jobs(settings.worker_lock_path):
            return True
        if not reread:
            # A worker between taking a job and claiming (or putting back) its run
            # holds it in no queue for an instant: a second look sees past that.
            reread = True
            time.sleep(SECOND_LOOK_S)
            pending |= pending_run_ids()
        return run_id in pending or run_id in worker_jobs(settings.worker_lock_path)

    return runs.mark_abandoned(now=now or utc_now(), is_pending=is_pending)


def check_background_sync(settings: Settings, *, now: datetime) -> str | None:
    """Enqueue a background sync when it is due; returns its run id or None."""
    open_store(settings)
    if abandoned := recover_abandoned(settings, now=now):
        logger.warning("runs abandoned by a dead process: %s", ", ".join(abandoned))
    if runs.active_runs():
        return None
    failures, last_failure = runs.scheduler_failures_since_success()
    if not is_sync_due(
        now=now,
        last_completed=runs.last_sync_completed(),
        interval_s=settings.refresh_interval_s,
        failures=failures,
        last_failure_at=last_failure,
    ):
        return None
    if not claim_schedule_slot(
        settings, now=now, last_completed=runs.last_sync_completed(), failures=failures
    ):
        return None
    account = request_account(settings, check_mirror=False)  # the job checks the mirror's
    scope = SyncScope(product_ids=settings.product_ids, account=account)
    request = SyncRequest(scope=scope, trigger=SyncTrigger.SCHEDULER)
    run_id, _ = enqueue_run(request, settings)
    logger.info("background sync due: run %s enqueued", run_id)
    return run_id


def claim_schedule_slot(
    settings: Settings, *, now: datetime, last_completed: datetime | None, failures: int
) -> bool:
    """True for the one process that may enqueue this due background sync.

    Keyed by the interval the moment falls in and by what made the sync due (the
    last completed sync, the failures since), in the queue's store: every worker
    running the periodic task in that interval asks the same key, and only the
    first gets it. A failed run changes the key, so its back-off retry still runs.
    """
    slot = int(now.timestamp() // max(1, settings.refresh_interval_s))
    done = last_completed.isoformat() if last_completed else "never"
    key = f"background-sync:{slot}:{done}:{failures}"
    previous = peek(LAST_CLAIM_KEY)
    if not claim_once(key, forget=previous.decode() if previous else None):
        logger.info("background sync of this interval already enqueued by another worker")
        return False
    put(LAST_CLAIM_KEY, key.encode())
    return True


@huey.periodic_task(crontab(minute="*"))
def background_sync() -> None:
    """Every minute: is the persisted ``last_sync_completed`` older than the interval?"""
    check_background_sync(current_settings(), now=utc_now())


def watch_abandoned(
    settings: Settings, stop: threading.Event, *, every_s: float = ABANDON_WATCH_S
) -> None:
    """Mark the runs of dead workers abandoned within seconds, until ``stop`` is set.

    With several workers on a shared queue, a worker killed mid-sync leaves its run
    "running". The periodic task looks only once a minute, and not at all while this
    worker runs a job; this thread looks every ``every_s`` while a run is active.
    """
    while not stop.wait(every_s):
        try:
            if runs.active_runs() and (abandoned := recover_abandoned(settings)):
                logger.warning("runs abandoned by a dead process: %s", ", ".join(abandoned))
        except Exception as exc:  # a store hiccup must not end the watch; the next look retries
            logger.warning("could not look for abandoned runs: %s", exc)


@huey.on_startup()
def _worker_started() -> None:
    global _watch_stop, _beating
    settings = current_settings()
    settings.ensure_home()
    if queue_is_shared():  # several workers may share the queue: each takes a slot
        if hold_worker_slot(settings.worker_lock_path) is None:
            logger.warning("every worker slot of %s is taken", settings.home)
        if _beating is None or _beating.storage is not huey.storage:
            _beating = Beating()  # and beats in the queue, for processes on other hosts
            _beating.start()
        if _watch_stop is None:
            _watch_stop = threading.Event()
            threading.Thread(
                target=watch_abandoned,
                args=(settings, _watch_stop),
                name="abandon-watch",
                daemon=True,
            ).start()
    elif not hold_worker_lock(settings.worker_lock_path):
        logger.warning("another worker already runs for %s", settings.home)
    abandoned = recover_abandoned(settings)
    if abandoned:
        logger.warning("runs abandoned by a dead process: %s", ", ".join(abandoned))


@huey.on_shutdown()
def _worker_stopped() -> None:
    global _watch_stop, _beating
    if _watch_stop is not None:
        _watch_stop.set()
        _watch_stop = None
    if _beating is not None:
        _beating.stop()
        _beating = None
    release_worker_lock(current_settings().worker_lock_path)
