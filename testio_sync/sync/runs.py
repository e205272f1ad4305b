"""Run bookkeeping in ``sync_events``: the single authority on what a run is doing.

Callers wait on a run by polling its row, never on huey's result store, so any
number of callers can attach to one run and all read the same result.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psutil
from peewee import DatabaseError

from testio_sync.dates import parse_iso, to_stored, utc_now
from testio_sync.errors import StoreError
from testio_sync.store import backend, failures
from testio_sync.store.db import explain
from testio_sync.store.models import SyncEvent, SyncMetadata, database
from testio_sync.store.queries import store_call
from testio_sync.sync.types import SyncRequest, SyncResult, SyncStatus

LAST_SYNC_COMPLETED = "last_sync_completed"
ACTIVE = (SyncStatus.QUEUED.value, SyncStatus.RUNNING.value)
LOST_IN_QUEUE = "The queue lost this run's job before a worker took it."


class RunNotRecordedError(StoreError):
    """A run ended but not even a short outcome could be written to its row."""


def request_of(row: SyncEvent) -> SyncRequest:
    return SyncRequest.from_dict(
        {"phases": row.phases, "scope": row.scope, "options": row.options, "trigger": row.trigger}
    )


def create_or_attach(
    request: SyncRequest,
    *,
    run_id: str,
    now: datetime,
    enqueue: Callable[[str], None] | None,
    owner_pid: int | None = None,
) -> tuple[str, bool]:
    """Attach to a queued or running run that covers ``request``, or create one.

    The check and the insert happen in one IMMEDIATE transaction, so two
    processes asking at once cannot both create a run. ``enqueue`` is called
    inside that transaction: if it fails, no row is left behind.

    Returns:
        ``(run_id, attached)``.
    """
    try:
        with database.connection_context(), backend.write_transaction():
            for row in (
                SyncEvent.select().where(SyncEvent.status.in_(ACTIVE)).order_by(SyncEvent.id)
            ):
                if request_of(row).covers(request):
                    return row.run_id, True
            SyncEvent.create(
                run_id=run_id,
                trigger=request.trigger.value,
                phases=[p.value for p in request.phases],
                scope=request.scope.to_dict(),
                options=request.options.to_dict(),
                status=SyncStatus.QUEUED.value,
                enqueued_at=now,
                in_process=enqueue is None,
                owner_pid=owner_pid,
                owner_started_at=_create_time(owner_pid) if owner_pid else None,
            )
            if enqueue is not None:
                enqueue(run_id)
            return run_id, False
    except DatabaseError as exc:
        reason = failures.describe(exc, database.database)
        raise StoreError(explain(f"Cannot record the sync request: {reason}")) from exc


@store_call("claim the sync run")
def claim_run(run_id: str, *, pid: int, now: datetime) -> SyncRequest | None:
    """Move a queued run to running for this process; None if it is not queued.

    A run judged lost by the queue check (abandoned before it ever started, not
    an in-process run) is claimed too: its job is running after all, so the row
    must say so rather than keep a false "abandoned".
    """
    lost_in_queue = (
        (SyncEvent.status == SyncStatus.ABANDONED.value)
        & SyncEvent.started_at.is_null()
        & (SyncEvent.in_process == False)  # noqa: E712 - a SQL comparison
    )
    with database.connection_context(), backend.write_transaction():
        changed = (
            SyncEvent.update(
                status=SyncStatus.RUNNING.value,
                started_at=now,
                owner_pid=pid,
                owner_started_at=_create_time(pid),
                finished_at=None,
                duration_seconds=None,
                result=None,
                error=None,
            )
            .where(
                (SyncEvent.run_id == run_id)
                & ((SyncEvent.status == SyncStatus.QUEUED.value) | lost_in_queue)
            )
            .execute()
        )
        if not changed:
            return None
        return request_of(SyncEvent.get(SyncEvent.run_id == run_id))


@store_call("record the start of the sync run")
def mark_started(run_id: str, *, now: datetime) -> None:
    """Stamp ``started_at`` when the run really starts: once it holds the sync lock."""
    with database.connection_context():
        SyncEvent.update(started_at=now).where(SyncEvent.run_id == run_id).execute()


@store_call("record the sync's progress")
def update_progress(run_id: str, progress: dict[str, Any]) -> None:
    with database.connection_context():
        SyncEvent.update(progress=progress).where(SyncEvent.run_id == run_id).execute()


@store_call("record the end of the sync run")
def finish_run(result: SyncResult, *, full_scope: bool, error: str | None = None) -> None:
    """Write the outcome; a full-scope success also moves ``last_sync_completed``."""
    with database.connection_context(), backend.write_transaction():
        row = SyncEvent.get_or_none(SyncEvent.run_id == result.run_id)
        SyncEvent.update(
            status=result.status.value,
            finished_at=result.finished_at,
            duration_seconds=round(result.duration_seconds, 3),
            result=result.to_dict(),
            error=error or ("; ".join(result.errors[:3]) or None),
            **result.counts(),
        ).where(SyncEvent.run_id == result.run_id).execute()
        if (
            row is not None
            and full_scope
            and result.status == SyncStatus.SUCCEEDED
            and result.finished_at is not None
        ):
            set_last_sync_completed(result.finished_at)


def result_of_crash(row: SyncEvent, error: str) -> SyncResult:
    """A failed result for a run whose job died before it could record its own end."""
    now = utc_now()
    started = row.started_at or row.enqueued_at
    return SyncResult(
        run_id=row.run_id,
        status=SyncStatus.FAILED,
        trigger=request_of(row).trigger,
        started_at=row.started_at,
        finished_at=now,
        duration_seconds=max(0.0, (now - started).total_seconds()) if started else 0.0,
        errors=[error],
    )


@store_call("record a short end of the sync run")
def finish_bare(result: SyncResult, error: str) -> None:
    """The outcome in the fewest bytes, for when the full result did not fit on disk.

    Progress and result are cleared, so the row shrinks and the write needs no new page.
    """
    with database.connection_context():
        SyncEvent.update(
            status=result.status.value,
            finished_at=result.finished_at,
            duration_seconds=round(result.duration_seconds, 3),
            progress=None,
            result=None,
            error=error[:500],
        ).where((SyncEvent.run_id == result.run_id) & SyncEvent.status.in_(ACTIVE)).execute()


def set_last_sync_completed(when: datetime) -> None:
    with database.connection_context():
        SyncMetadata.insert(
            key=LAST_SYNC_COMPLETED, value=to_stored(when), updated_at=when
        ).on_conflict(
            conflict_target=[SyncMetadata.key],
            preserve=[SyncMetadata.value, SyncMetadata.updated_at],
        ).execute()


def last_sync_completed() -> datetime | None:
    with database.connection_context():
        row = SyncMetadata.get_or_none(SyncMetadata.key == LAST_SYNC_COMPLETED)
    return parse_iso(row.value) if row and row.value else None


def get_run(run_id: str) -> SyncEvent | None:
    with database.connection_context():
        return SyncEvent.get_or_none(SyncEvent.run_id == run_id)


def active_runs() -> list[SyncEvent]:
    with database.connection_context():
        return list(SyncEvent.select().where(SyncEvent.status.in_(ACTIVE)).order_by(SyncEvent.id))


def recent_runs(limit: int = 5) -> list[SyncEvent]:
    with database.connection_context():
        return list(SyncEvent.select().order_by(SyncEvent.id.desc()).limit(limit))


def scheduler_failures_since_success() -> tuple[int, datetime | None]:
    """Consecutive failed scheduler runs since the last success, and the last one's end."""
    failures, last_end = 0, None
    with database.connection_context():
        rows = (
            SyncEvent.select(SyncEvent.status, SyncEvent.finished_at)
            .where(SyncEvent.trigger == "scheduler")
            .order_by(SyncEvent.id.desc())
            .limit(20)
        )
        for row in rows:
            if row.status in (SyncStatus.FAILED.value, SyncStatus.ABANDONED.value):
                failures += 1
                last_end = last_end or row.finished_at
            elif row.status in ACTIVE:
                continue
            else:
                break
    return failures, last_end


def result_of(row: SyncEvent) -> SyncResult:
    """The run's SyncResult: final if finished, else what is known so far."""
    if row.result:
        return SyncResult.from_dict(row.result)
    request = request_of(row)
    return SyncResult(
        run_id=row.run_id,
        status=SyncStatus(row.status),
        trigger=request.trigger,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_seconds=row.duration_seconds or 0.0,
        errors=[row.error] if row.error else [],
    )


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def job_thread_name(run_id: str) -> str:
    """The name of the thread that runs an in-process job (see ``_thread_gone_here``)."""
    return f"sync-{run_id}"


def _thread_gone_here(row: SyncEvent) -> bool:
    """An in-process run of this very process whose job thread is gone."""
    if not row.in_process or row.owner_pid != os.getpid():
        return False
    return not any(t.name == job_thread_name(row.run_id) for t in threading.enumerate())


def owner_alive(pid: int | None, started_at: float | None) -> bool:
    """True when the recorded process still runs (not a zombie, not a reused PID)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(proc.create_time() - started_at) < 1.0
    except psutil.Error:
        return False


@store_call("mark dead sync runs as abandoned")
def mark_abandoned(
    *, now: datetime, is_pending: Callable[[str], bool] | None = None, grace_s: float = 10.0
) -> list[str]:
    """Mark runs whose process died as ``abandoned``; returns their run ids.

    A running row is abandoned when its owner process is gone. A queued row is
    abandoned when it was meant to run in a process that is gone, or when the
    queue no longer holds its job (``is_pending``) for longer than ``grace_s``.
    """
    abandoned: list[str] = []
    with database.connection_context():
        # Rows first, then (lazily) the queue: an enqueue commits to the queue before
        # its row commits, so a run read here is never missing from the pending set.
        for row in list(SyncEvent.select().where(SyncEvent.status.in_(ACTIVE))):
            why = "The process running this sync died before it finished."
            if row.status == SyncStatus.RUNNING.value or row.in_process:
                dead = not owner_alive(row.owner_pid, row.owner_started_at) or (
                    row.status == SyncStatus.RUNNING.value and _thread_gone_here(row)
                )
            else:
                old = row.enqueued_at < now - timedelta(seconds=grace_s)
                dead = old and is_pending is not None and not is_pending(row.run_id)
                why = LOST_IN_QUEUE
            if not dead:
                continue
            started = row.started_at or row.enqueued_at
            result = SyncResult(
                run_id=row.run_id,
                status=SyncStatus.ABANDONED,
                trigger=request_of(row).trigger,
                started_at=row.started_at,
                finished_at=now,
                duration_seconds=max(0.0, (now - started).total_seconds()),
                errors=[why],
            )
            updated = (
                SyncEvent.update(
                    status=SyncStatus.ABANDONED.value,
                    finished_at=now,
                    duration_seconds=result.duration_seconds,
                    result=result.to_dict(),
                    error=result.errors[0],
                )
                .where((SyncEvent.id == row.id) & (SyncEvent.status == row.status))
                .execute()
            )
            if updated:
                abandoned.append(row.run_id)
    return abandoned
