"""The sync lock: one sync at a time across processes, plus per-entity asyncio locks.

Two layers, because two kinds of work overlap:

* ``SyncLock`` is held for the whole run of a sync job (huey worker, CLI fallback,
  restore). Its holder record, the stale rule and the short OS lock guarding both live
  in ``lock_record``. A kernel lock held for the whole run could not be taken from a
  live but hung process, so the old tool judged "stale" by file age alone and stole
  the lock of every sync longer than an hour; here a holder that keeps heartbeating
  is never taken over however long it runs, and a stale one is reclaimed with a
  warning that goes into the run's warnings. A holder that finds its record replaced
  sets ``lost`` and must stop writing.
* ``EntityLocks`` (re-exported here) serialises read-through refreshes of one entity
  inside one process (the MCP server), so concurrent tool calls share one fetch.

Rule: never acquire the sync lock while holding an entity lock; a refresh that waits
for a sync which waits for that refresh would deadlock. ``SyncLock.acquire`` raises
RuntimeError when the current task holds one (tracked in a contextvar).
POSIX only, like the worker. A process stopped inside the microsecond guard blocks
others until it resumes or dies; waiters then time out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from testio_sync.errors import ConfigError, SyncLockedError
from testio_sync.repositories.entity_locks import EntityLocks, held_entity_keys
from testio_sync.sync.lock_record import (
    BUSY,
    RELEASE_PATIENCE_S,
    Attempt,
    describe_holder,
    guarded,
    is_stale,
    iso,
    read_holder,
    read_record,
    who,
    write_record,
)

# EntityLocks lives in its own module; it is re-exported here, beside SyncLock.
__all__ = ["EntityLocks", "SyncLock", "describe_holder", "is_stale", "read_holder"]

logger = logging.getLogger("testio_sync.lock")


class SyncLock:
    """Cross-process lock held for a whole sync run; see the module docstring.

    Async callers use ``async with`` (heartbeat is an asyncio task, so a stuck event
    loop stops it and the run can be judged hung); blocking callers use ``with``
    (heartbeat in a daemon thread). ``warnings`` collects what the run should report:
    a reclaimed stale holder at acquire, a lost lock later. One instance per run.
    """

    def __init__(
        self,
        path: Path,
        *,
        run_id: str,
        timeout_s: float = 30.0,
        stale_after_s: float = 3600.0,
        heartbeat_s: float = 30.0,
        poll_s: float = 0.2,
    ) -> None:
        if timeout_s < 0 or poll_s <= 0 or not 0 < heartbeat_s < stale_after_s:
            raise ValueError("need timeout_s >= 0, poll_s > 0 and 0 < heartbeat_s < stale_after_s")
        self.path = Path(path)
        self.where = str(path)  # how messages name the lock
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.warnings: list[str] = []
        self._token = uuid.uuid4().hex
        self._record: dict[str, Any] | None = None
        self._lost = threading.Event()
        self._lost_to: dict[str, Any] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._beat_thread: threading.Thread | None = None
        self._beat_stop = threading.Event()

    @property
    def lost(self) -> bool:
        """True once another holder reclaimed the lock from this run: stop writing."""
        return self._lost.is_set()

    @property
    def held(self) -> bool:
        return self._record is not None and not self.lost

    async def acquire(self) -> list[str]:
        """Wait up to ``timeout_s`` without blocking the event loop; return the warnings.

        Raises:
            SyncLockedError: a live holder kept the lock for the whole wait.
            RuntimeError: the task holds an entity lock, or this instance is held.
            ConfigError: the lock file cannot be created or opened.
        """
        self._check_can_acquire()
        deadline, seen = time.monotonic() + self.timeout_s, None
        while not (attempt := self._attempt()).claimed:
            seen = attempt.holder or seen
            if (remaining := deadline - time.monotonic()) <= 0:
                raise self._timeout_error(seen)
            await asyncio.sleep(min(self.poll_s, remaining))
        self._beat_task = asyncio.get_running_loop().create_task(
            self._beat_async(), name=f"sync-lock-heartbeat-{self.run_id}"
        )
        return list(self.warnings)

    def acquire_blocking(self) -> list[str]:
        """Blocking ``acquire`` for non-async callers (e.g. restore); same errors."""
        self._check_can_acquire()
        deadline, seen = time.monotonic() + self.timeout_s, None
        while not (attempt := self._attempt()).claimed:
            seen = attempt.holder or seen
            if (remaining := deadline - time.monotonic()) <= 0:
                raise self._timeout_error(seen)
            time.sleep(min(self.poll_s, remaining))
        self._beat_stop.clear()
        self._beat_thread = threading.Thread(
            target=self._beat_in_thread, name=f"sync-lock-heartbeat-{self.run_id}", daemon=True
        )
        self._beat_thread.start()
        return list(self.warnings)

    async def release(self) -> None:
        """Stop heartbeating and clear the record if it is still ours; safe to repeat."""
        task, self._beat_task = self._beat_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self._stop_thread()
        deadline = time.monotonic() + RELEASE_PATIENCE_S
        while not self._try_release(give_up=time.monotonic() >= deadline):
            await asyncio.sleep(self.poll_s)

    def release_blocking(self) -> None:
        """Blocking ``release``."""
        if self._beat_task is not None:
            self._beat_task.cancel()
            self._beat_task = None
        self._stop_thread()
        deadline = time.monotonic() + RELEASE_PATIENCE_S
        while not self._try_release(give_up=time.monotonic() >= deadline):
            time.sleep(self.poll_s)

    async def __aenter__(self) -> SyncLock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    def __enter__(self) -> SyncLock:
        self.acquire_blocking()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release_blocking()

    def _check_can_acquire(self) -> None:
        if held := held_entity_keys():
            keys = ", ".join(repr(key) for _, key in held)
            raise RuntimeError(
                f"Acquiring the sync lock while holding entity lock(s) {keys} could deadlock; "
                "release them first"
            )
        if self._record is not None:
            raise RuntimeError(f"SyncLock for run {self.run_id} is already held; use one per run")

    def _attempt(self) -> Attempt:
        """One read-check-write of the record under the guard; never waits."""

        def claim(fd: int) -> Attempt:
            snapshot, now, warning = read_record(fd), time.time(), None
            if snapshot.unreadable:
                warning = f"Replaced an unreadable sync lock record at {self.path}"
            elif snapshot.record is not None:
                reason = is_stale(
                    snapshot.record, now=now, stale_after_s=self.stale_after_s, mtime=snapshot.mtime
                )
                if reason is None:
                    return Attempt(False, holder=snapshot.record)
                warning = f"Reclaimed a stale sync lock held by {who(snapshot.record)}: {reason}"
            record = {
                "pid": os.getpid(),
                "create_time": psutil.Process().create_time(),
                "host": socket.gethostname(),
                "run_id": self.run_id,
                "token": self._token,
                "started_at": iso(now),
                "heartbeat_at": iso(now),
            }
            write_record(fd, record)
            self._record = record
            return Attempt(True, warning=warning)

        try:
            attempt = guarded(self.path, claim, create=True)
        except OSError as exc:
            raise ConfigError(f"Cannot use the sync lock file {self.path}: {exc.strerror}") from exc
        if attempt is BUSY:
            return Attempt(False)
        if attempt.claimed:
            self._lost.clear()
            self._lost_to = None
            self.warnings = [attempt.warning] if attempt.warning else []
            if attempt.warning:
                logger.warning(attempt.warning)
        return attempt

    def _timeout_error(self, holder: dict[str, Any] | None) -> SyncLockedError:
        if holder is None:
            return SyncLockedError(
                f"Timed out after {self.timeout_s:g} s waiting for the sync lock at {self.where}; "
                "another process kept it busy. Try again in a moment."
            )
        return SyncLockedError(
            f"Another sync holds the lock: {who(holder)}, last heartbeat "
            f"{holder.get('heartbeat_at', '?')}. Gave up after {self.timeout_s:g} s; "
            "try again when it finishes.",
            holder=holder,
        )

    def _mark_lost(self, new_holder: dict[str, Any] | None, reason: str | None = None) -> None:
        if self._lost.is_set():
            return
        self._lost_to = new_holder
        self._lost.set()
        message = f"Lost the sync lock at {self.where} for run {self.run_id}: " + (
            reason
            or (f"reclaimed by {who(new_holder)}" if new_holder else "its record was removed")
        )
        self.warnings.append(message)
        logger.warning(message)

    def _beat_once(self) -> bool:
        """One heartbeat; False when the guard was busy and it should be retried soon."""

        def beat(fd: int) -> bool:
            snapshot = read_record(fd)
            if snapshot.record is None or snapshot.record.get("token") != self._token:
                self._mark_lost(snapshot.record)
            else:
                record = {**snapshot.record, "heartbeat_at": iso(time.time())}
                write_record(fd, record)
                self._record = record
            return True

        try:
            return guarded(self.path, beat) is not BUSY
        except FileNotFoundError:
            self._mark_lost(None)
        except OSError as exc:  # e.g. disk full: keep trying, the mtime may still be touched
            logger.warning("Sync lock heartbeat failed for %s: %s", self.path, exc)
        return True

    async def _beat_async(self) -> None:
        delay = self.heartbeat_s
        while not self.lost:
            await asyncio.sleep(delay)
            delay = self.heartbeat_s if self._beat_once() else self.poll_s

    def _beat_in_thread(self) -> None:
        delay = self.heartbeat_s
        while not self._beat_stop.wait(delay) and not self.lost:
            delay = self.heartbeat_s if self._beat_once() else self.poll_s

    def _stop_thread(self) -> None:
        thread, self._beat_thread = self._beat_thread, None
        if thread is not None:
            self._beat_stop.set()
            thread.join()

    def _try_release(self, *, give_up: bool) -> bool:
        """Clear the record if still ours; False when the guard was busy (retry)."""
        if self._record is None:
            return True

        def clear(fd: int) -> None:
            snapshot = read_record(fd)
            if snapshot.record is not None and snapshot.record.get("token") == self._token:
                write_record(fd, None)
            else:
                self._mark_lost(snapshot.record)

        try:
            if guarded(self.path, clear) is BUSY:
                if not give_up:
                    return False
                logger.warning(
                    "Gave up clearing the sync lock record at %s (guard busy); it goes stale "
                    "once this process exits or stops heartbeating",
                    self.path,
                )
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("Could not clear the sync lock record at %s: %s", self.path, exc)
        self._record = None
        return True
