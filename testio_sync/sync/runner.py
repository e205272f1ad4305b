"""Run one queued sync job: claim its row, hold the file lock, run, record.

The huey task and the CLI's in-process fallback both call ``run_job``, so a
sync behaves the same wherever it runs. The run's ``sync_events`` row is the
authority callers wait on; whatever happens here, the row ends finished.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sqlite3
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from peewee import PeeweeException

from testio_sync.api.client import ApiClient
from testio_sync.dates import utc_now
from testio_sync.errors import TestioSyncError
from testio_sync.settings import Settings
from testio_sync.store import failures, save
from testio_sync.store.backups import new_backup_path
from testio_sync.store.db import backup_database, explain, open_store
from testio_sync.sync import runs
from testio_sync.sync.account import check_run_account, remember_account
from testio_sync.sync.engine import run_sync
from testio_sync.sync.lock import SyncLock
from testio_sync.sync.types import SyncProgress, SyncRequest, SyncResult, SyncStatus

logger = logging.getLogger("testio_sync.sync")

PROGRESS_INTERVAL_S = 0.2


class RowProgress:
    """Progress sink that writes the run's row at most every 0.2 s (and the last state)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._last = 0.0
        self._pending: SyncProgress | None = None

    def __call__(self, progress: SyncProgress) -> None:
        self._pending = progress
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_S or progress.phase is None:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if self._pending is not None:
            runs.update_progress(self.run_id, self._pending.to_dict())
            self._pending = None


def nuke_backup_path(settings: Settings) -> Path:
    """Where a nuke starting now backs the data up (a fresh name)."""
    return new_backup_path(settings.backups_dir, "before-nuke", utc_now())


def counts_as_full(request: SyncRequest, settings: Settings) -> bool:
    """True when a success should reset the background timer (the default scope synced)."""
    scope = request.scope
    if scope.since_date is not None:
        return False
    if scope.product_ids is None:
        return True
    return settings.product_ids is not None and set(settings.product_ids) <= set(scope.product_ids)


def _failed(run_id: str, request: SyncRequest, message: str, started: float) -> SyncResult:
    return SyncResult(
        run_id=run_id,
        status=SyncStatus.FAILED,
        trigger=request.trigger,
        errors=[message],
        started_at=utc_now(),
        finished_at=utc_now(),
        duration_seconds=time.monotonic() - started,
    )


async def run_job(
    run_id: str,
    settings: Settings,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> SyncResult | None:
    """Run the queued run ``run_id``; None when it was not queued (already taken).

    Raises nothing for sync failures: they are in the returned and recorded result.
    """
    db = open_store(settings)
    # One connection for the whole job (this thread): closing the last one
    # checkpoints the WAL, which would cost ~14 ms per saved page.
    with db.connection_context(), fewer_gc_passes():
        return await _claim_and_run(run_id, settings, should_stop)


@contextmanager
def fewer_gc_passes(gen0: int = 50_000) -> Iterator[None]:
    """Collect garbage less often while a job runs.

    Decoding bug lists allocates hundreds of thousands of containers; with the
    default thresholds the collector runs every 700 of them and rescans the live
    heap, which measured as three quarters of the decoding time of a large sync.
    """
    previous = gc.get_threshold()
    gc.set_threshold(max(gen0, previous[0]), max(50, previous[1]), max(100, previous[2]))
    try:
        yield
    finally:
        gc.set_threshold(*previous)


async def _claim_and_run(
    run_id: str, settings: Settings, should_stop: Callable[[], bool]
) -> SyncResult | None:
    request = runs.claim_run(run_id, pid=os.getpid(), now=utc_now())
    if request is None:
        logger.info("run %s is not queued any more; skipped", run_id)
        return None
    # From here on the row says "running": whatever breaks, it must end finished.
    clock = {"started": time.monotonic()}
    lock = SyncLock(settings.lock_path, run_id=run_id, timeout_s=settings.lock_timeout_s)
    result: SyncResult | None = None
    try:
        result = await _lock_and_run(run_id, request, settings, lock, should_stop, clock)
    except asyncio.CancelledError:
        result = _failed(run_id, request, "The sync was interrupted.", clock["started"])
    except TestioSyncError as exc:
        result = _failed(run_id, request, str(exc), clock["started"])
    except Exception as exc:  # a job must always leave its row finished, whatever broke
        logger.error("run %s crashed:\n%s", run_id, traceback.format_exc())
        result = _failed(run_id, request, crash_message(exc, settings), clock["started"])
    finally:
        try:
            await lock.release()
        except Exception:  # the lock record goes stale; the row must still end
            logger.exception("run %s: could not release the sync lock", run_id)
        if result is None:  # KeyboardInterrupt, SystemExit: record, then let it go on
            result = _failed(run_id, request, "The sync was interrupted.", clock["started"])
        record_end(result, full_scope=counts_as_full(request, settings))
    log_outcome(result)
    return result


async def _lock_and_run(
    run_id: str,
    request: SyncRequest,
    settings: Settings,
    lock: SyncLock,
    should_stop: Callable[[], bool],
    clock: dict[str, float],
) -> SyncResult:
    """Take the sync lock, then run; the caller releases the lock whatever happens."""
    runs.update_progress(run_id, {"message": "waiting for the sync lock"})
    warnings = await lock.acquire()
    runs.mark_started(run_id, now=utc_now())
    clock["started"] = time.monotonic()
    sink = RowProgress(run_id)
    try:
        return await _run_locked(
            run_id, request, settings, sink, warnings, lambda: should_stop() or lock.lost
        )
    finally:
        try:
            sink.flush()
        except TestioSyncError as exc:  # the outcome matters more than the last progress
            logger.warning("run %s: %s", run_id, exc)


def crash_message(exc: Exception, settings: Settings) -> str:
    """An unexpected error as one line; a database error names its cause (e.g. a full disk)."""
    if isinstance(exc, PeeweeException | sqlite3.Error):
        return explain(f"Database error: {failures.describe(exc, settings.db_path)}")
    return f"Internal error: {type(exc).__name__}: {explain(exc)}"


def record_end(result: SyncResult, *, full_scope: bool) -> None:
    """Write the outcome; when it does not fit (full disk), a short one.

    Raises:
        RunNotRecordedError: not even the short outcome could be written; the
            row still says "running", so the caller must make the failure seen.
    """
    try:
        runs.finish_run(result, full_scope=full_scope)
        return
    except TestioSyncError as exc:
        logger.error("run %s: %s", result.run_id, exc)
        error = f"The run {result.status.value}, but its result could not be recorded: {exc}"
        if result.errors:
            error += f". First error: {result.errors[0]}"
    if result.status == SyncStatus.SUCCEEDED:
        result.status = SyncStatus.FAILED
    result.errors.insert(0, error)
    try:
        runs.finish_bare(result, error)
    except TestioSyncError as exc:
        raise runs.RunNotRecordedError(
            f"Run {result.run_id} ended ({result.status.value}) but its end could not be "
            f"recorded: {exc}"
        ) from exc


def log_outcome(result: SyncResult) -> None:
    """The run's last log line, whatever happened: it always gives the duration."""
    verb = {SyncStatus.SUCCEEDED: "completed", SyncStatus.PARTIAL: "finished with errors"}
    level = logging.INFO if result.status == SyncStatus.SUCCEEDED else logging.WARNING
    logger.log(
        level,
        "Sync %s in %.1fs (run %s)",
        verb.get(result.status, result.status.value),
        result.duration_seconds,
        result.run_id,
    )


async def _run_locked(
    run_id: str,
    request: SyncRequest,
    settings: Settings,
    sink: RowProgress,
    warnings: list[str],
    should_stop: Callable[[], bool],
) -> SyncResult:
    account = check_run_account(request.scope.account, settings)  # before any write
    backup: Path | None = None
    if request.options.nuke:
        # Back up first: whatever happens next, the user keeps a database.
        named = request.options.backup_path
        dest = Path(named) if named else nuke_backup_path(settings)
        backup = backup_database(settings.db_path, dest)
        save.wipe(request.scope.product_ids)
    async with ApiClient.from_settings(settings) as client:
        result = await run_sync(
            request,
            run_id=run_id,
            client=client,
            settings=settings,
            sink=sink,
            should_stop=should_stop,
            warnings=warnings,
        )
    remember_account(account, accepted=result.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL))
    if backup is not None:
        result.backup_path = str(backup)
        if result.status == SyncStatus.FAILED:
            result.errors.append(f"Put the previous data back with: testio-sync restore {backup}")
    return result
