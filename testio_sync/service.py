"""``SyncService``: the one library API the CLI, the MCP server and the worker share.

``execute_sync`` validates a request, then attaches to a queued or running run
that covers it or enqueues a new one, and returns a ``SyncHandle`` that waits
for (or polls) the run's ``sync_events`` row. With no worker alive, a caller may
run the job in its own process (``in_process=True``): the same job code, under
the same file lock.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from testio_sync import tasks
from testio_sync.dates import to_iso, utc_now
from testio_sync.errors import (
    StoreError,
    SyncError,
    TestioSyncError,
    UnknownProductsError,
    UsageError,
)
from testio_sync.settings import Settings
from testio_sync.store import queries
from testio_sync.store.db import open_store
from testio_sync.store.models import SyncEvent
from testio_sync.sync import runs
from testio_sync.sync.account import request_account
from testio_sync.sync.lock_status import holder_status
from testio_sync.sync.restore import RestoreReport, restore_backup
from testio_sync.sync.runner import nuke_backup_path, run_job
from testio_sync.sync.types import (
    DEFAULT_PHASES,
    SyncOptions,
    SyncPhase,
    SyncProgress,
    SyncRequest,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)
from testio_sync.tasks.backends import describe as describe_queue
from testio_sync.tasks.liveness import worker_alive, worker_pids
from testio_sync.tasks.presence import live_workers

ProgressCallback = Callable[[SyncProgress], None]
OWNER_CHECK_S = 1.0  # how often a waiter checks that the run's process is still alive


class SyncWaitTimeout(SyncError):
    """The run did not finish within the wait; it goes on (``.run_id`` to follow it)."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass
class RunView:
    """A run as a caller sees it while polling."""

    run_id: str
    status: SyncStatus
    progress: SyncProgress
    result: SyncResult | None
    request: SyncRequest

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "progress": self.progress.to_dict(),
            "result": self.result.to_dict() if self.result else None,
            "request": self.request.to_dict(),
        }


def view_row(run_id: str) -> SyncEvent:
    row = runs.get_run(run_id)
    if row is None:
        raise SyncError(f"Run {run_id} is unknown.")
    return row


def view_of(row: SyncEvent) -> RunView:
    status = SyncStatus(row.status)
    return RunView(
        run_id=row.run_id,
        status=status,
        progress=SyncProgress.from_dict(row.progress),
        result=runs.result_of(row) if status.finished else None,
        request=runs.request_of(row),
    )


@dataclass
class SyncHandle:
    """A queued or running run: poll it, or wait for its ``SyncResult``."""

    run_id: str
    attached: bool
    settings: Settings
    in_process: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _crash: BaseException | None = field(default=None, repr=False)

    def poll(self, *, check_owner: bool = False) -> RunView:
        """The run now; ``check_owner`` first marks it abandoned if its process died."""
        if check_owner:
            tasks.sync.recover_abandoned(self.settings)
        return view_of(view_row(self.run_id))

    def start(self) -> None:
        """Start the in-process job in a thread (no-op for queued runs)."""
        if self.in_process and self._thread is None:

            def work() -> None:
                try:
                    asyncio.run(run_job(self.run_id, self.settings, should_stop=self._stop.is_set))
                except BaseException as exc:  # kept for the waiter, who must not wait for ever
                    self._crash = exc

            self._thread = threading.Thread(
                target=work, name=runs.job_thread_name(self.run_id), daemon=True
            )
            self._thread.start()

    def check_thread(self, view: RunView) -> None:
        """Raise when this handle's in-process job ended without finishing its run.

        Raises:
            SyncError: the job's thread is gone and the row is still unfinished.
        """
        thread = self._thread
        if view.result is not None or thread is None or thread.is_alive():
            return
        view = self.poll()  # it may have finished between the poll and the check
        if view.result is not None:
            return
        crash = self._crash
        if isinstance(crash, runs.RunNotRecordedError):
            reason = str(crash)
        elif isinstance(crash, TestioSyncError):
            reason = f"Run {self.run_id} stopped: {crash}"
        else:
            cause = f": {type(crash).__name__}: {crash}" if crash else ""
            reason = f"Run {self.run_id} stopped without recording its end{cause}."
        if not isinstance(crash, runs.RunNotRecordedError):
            try:  # the row must not stay active for the next caller to attach to
                runs.finish_bare(runs.result_of_crash(view_row(self.run_id), reason), reason)
            except StoreError as exc:
                reason = f"{reason} The run could not be marked failed either: {exc}"
        raise SyncError(reason) from crash

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask an in-process run to stop cleanly, and wait for it to record its end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        poll_s: float = 0.05,
    ) -> SyncResult:
        """Block until the run finishes and return its result.

        Raises:
            SyncWaitTimeout: not finished within ``timeout_s`` (the run goes on).
            SyncError: the in-process job died without finishing the run.
            StoreError: the run's row cannot be read or marked abandoned.
        """
        self.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        next_check = time.monotonic() + OWNER_CHECK_S
        while True:
            check = time.monotonic() >= next_check
            if check:
                next_check = time.monotonic() + OWNER_CHECK_S
            view = self.poll(check_owner=check)
            self.check_thread(view)
            if on_progress is not None:
                on_progress(view.progress)
            if view.result is not None:
                if self._thread is not None:
                    self._thread.join(5.0)
                return view.result
            if deadline is not None and time.monotonic() >= deadline:
                raise SyncWaitTimeout(
                    f"Run {self.run_id} is still {view.status.value}.", run_id=self.run_id
                )
            time.sleep(poll_s)

    async def wait_async(
        self,
        timeout_s: float | None = None,
        *,
        on_progress: Callable[[SyncProgress], Any] | None = None,
        poll_s: float = 0.05,
    ) -> RunView:
        """Await the run without blocking the loop; returns the last view (maybe unfinished)."""
        self.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        next_check = time.monotonic() + OWNER_CHECK_S
        last: dict[str, Any] | None = None
        while True:
            check = time.monotonic() >= next_check
            if check:
                next_check = time.monotonic() + OWNER_CHECK_S
            view = await asyncio.to_thread(self.poll, check_owner=check)
            self.check_thread(view)
            if on_progress is not None and view.progress.to_dict() != last:
                last = view.progress.to_dict()
                maybe = on_progress(view.progress)
                if asyncio.iscoroutine(maybe):
                    await maybe
            if view.result is not None:
                return view
            if deadline is not None and time.monotonic() >= deadline:
                return view
            await asyncio.sleep(poll_s)


class SyncService:
    """Sync orchestration shared by every entry point."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.settings.ensure_home()
        open_store(self.settings)
        tasks.configure(self.settings)

    # -- requests ------------------------------------------------------------------

    def build_request(
        self,
        phases: list[SyncPhase] | tuple[SyncPhase, ...] | None = None,
        scope: SyncScope | None = None,
        options: SyncOptions | None = None,
        trigger: SyncTrigger = SyncTrigger.CLI,
    ) -> SyncRequest:
        """Validate and complete a request (the default product filter applies).

        Raises:
            UsageError: contradictory options or products this store knows not to exist.
            AccountMismatchError: the mirror holds the data of another account.
        """
        scope = scope or SyncScope()
        if scope.product_ids is None and self.settings.product_ids:
            scope = replace(scope, product_ids=self.settings.product_ids)
        scope = replace(scope, account=request_account(self.settings))
        if scope.since_date is not None and scope.since_date > utc_now():
            raise UsageError("the day is in the future", param="since")
        if scope.product_ids:
            known = set(queries.product_ids())
            unknown = sorted(set(scope.product_ids) - known)
            if known and unknown:
                raise UnknownProductsError(unknown)
        return SyncRequest(
            phases=tuple(phases or DEFAULT_PHASES),
            scope=scope,
            options=options or SyncOptions(),
            trigger=trigger,
        )

    def worker_alive(self) -> bool:
        """A worker of this data directory holds a slot, or one beats on the shared queue.

        The beats show workers on other hosts (``tasks.presence``): a server or CLI there
        then enqueues for them instead of running the sync itself.
        """
        return worker_alive(self.settings.worker_lock_path) or bool(live_workers())

    def workers(self) -> list[dict[str, Any]]:
        """The live workers: this directory's slots, and every worker beating on the queue."""
        here = socket.gethostname()
        beating = live_workers()
        seen = {(w["host"], w["pid"]) for w in beating}
        local = [
            {"host": here, "pid": pid, "started_at": None, "beat_age_seconds": None}
            for pid in worker_pids(self.settings.worker_lock_path)
            if (here, pid) not in seen
        ]
        return local + beating

    def execute_sync(
        self,
        phases: list[SyncPhase] | tuple[SyncPhase, ...] | None = None,
        scope: SyncScope | None = None,
        options: SyncOptions | None = None,
        *,
        trigger: SyncTrigger = SyncTrigger.CLI,
        allow_in_process: bool = False,
    ) -> SyncHandle:
        """Enqueue a sync (or attach to one that covers it) and return its handle.

        Raises:
            UsageError: the request is invalid; nothing was enqueued.
            SyncError: no worker is alive and ``allow_in_process`` is False.
        """
        request = self.build_request(phases, scope, options, trigger)
        tasks.sync.recover_abandoned(self.settings)
        if self.worker_alive():
            run_id, attached = tasks.enqueue_run(request, self.settings)
            return SyncHandle(run_id=run_id, attached=attached, settings=self.settings)
        if not allow_in_process:
            where = " for this queue" if self.settings.queue_url else ""
            raise SyncError(f"No worker is running{where}: start one with `testio-sync worker`.")
        run_id, attached = runs.create_or_attach(
            request,
            run_id=tasks.sync.new_run_id(),
            now=utc_now(),
            enqueue=None,
            owner_pid=os.getpid(),
        )
        # A run queued for a worker that is gone would wait for ever: run it here.
        # The job claims it (queued -> running) first, so a worker started later
        # finds it taken and skips it.
        take_over = not attached or self._queued_for_a_worker(run_id)
        return SyncHandle(
            run_id=run_id, attached=attached, settings=self.settings, in_process=take_over
        )

    @staticmethod
    def _queued_for_a_worker(run_id: str) -> bool:
        row = runs.get_run(run_id)
        return row is not None and row.status == SyncStatus.QUEUED.value and not row.in_process

    def handle(self, run_id: str) -> SyncHandle:
        if runs.get_run(run_id) is None:
            raise UsageError(f"No sync run {run_id!r} is recorded.")
        return SyncHandle(run_id=run_id, attached=True, settings=self.settings)

    # -- status ------------------------------------------------------------------------

    def status(self, *, recent: int = 5) -> dict[str, Any]:
        """Everything ``testio-sync status`` and ``get_sync_status`` show; no API calls."""
        tasks.sync.recover_abandoned(self.settings)
        now = utc_now()
        last = runs.last_sync_completed()
        holder = holder_status(self.settings)
        workers = self.workers()
        pids = [w["pid"] for w in workers]
        return {
            "database": self.settings.store_label,
            "database_bytes": queries.store_bytes(self.settings),
            "counts": queries.entity_counts(),
            "last_sync_completed": to_iso(last),
            "last_sync_age_seconds": round((now - last).total_seconds()) if last else None,
            "active_runs": [view_of(r).to_dict() for r in runs.active_runs()],
            "lock_holder": holder,
            "queue": describe_queue(self.settings),
            "worker_alive": bool(workers) or worker_alive(self.settings.worker_lock_path),
            "worker_pid": pids[0] if pids else None,
            "worker_pids": pids,
            "workers": workers,
            "broken_tests": [
                {
                    "product_id": b.product_id,
                    "position": b.position,
                    "between_test_ids": [b.prev_test_id, b.next_test_id],
                    "first_seen_at": to_iso(b.first_seen_at),
                }
                for b in queries.list_broken_tests()
            ],
            "products": queries.product_freshness(),
            "recent_runs": [
                {
                    "run_id": r.run_id,
                    "trigger": r.trigger,
                    "status": r.status,
                    "enqueued_at": to_iso(r.enqueued_at),
                    "duration_seconds": r.duration_seconds,
                    "error": r.error,
                }
                for r in runs.recent_runs(recent)
            ],
        }

    # -- nuke and restore -----------------------------------------------------------

    def nuke_preview(self, product_ids: tuple[int, ...] | None) -> dict[str, Any]:
        """What a nuke would destroy, and where its backup would go."""
        return {
            "counts": queries.entity_counts(product_ids),
            "product_ids": list(product_ids) if product_ids else None,
            "database": self.settings.store_label,
            "database_bytes": queries.store_bytes(self.settings),
            "backup_path": str(nuke_backup_path(self.settings)),
        }

    def restore(self, backup: Path | None = None) -> RestoreReport:
        """Put a backup's data back (see ``sync.restore.restore_backup``)."""
        return restore_backup(self.settings, backup)
