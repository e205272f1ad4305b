"""The sync lock: one sync at a time across processes, plus per-entity asyncio locks.

Two layers, because two kinds of work overlap:

* ``SyncLock`` is held for the whole run of a sync job (huey worker, CLI fallback,
  restore). Holding it *is* having your record in ``<home>/sync.lock``: JSON with the
  PID, the process start time (psutil ``create_time()``), host, run id, ``started_at``
  and ``heartbeat_at``. A kernel lock held for the whole run could not be taken from a
  live but hung process, so the old tool judged "stale" by file age alone and stole the
  lock of every sync longer than an hour.
* ``EntityLocks`` serialises read-through refreshes of one entity inside one process
  (the MCP server), so concurrent tool calls do not fetch the same thing twice.

Rule: never acquire the sync lock while holding an entity lock; a refresh that waits
for a sync which waits for that refresh would deadlock. ``SyncLock.acquire`` raises
RuntimeError when the current task holds one (tracked in a contextvar, which tasks
created inside ``hold()`` inherit).

Stale rule (``is_stale``): the holder is gone (dead, a zombie, or its PID now names a
process with another start time), or it showed no sign of life (the newer of its
heartbeat field and the file mtime) for ``stale_after_s``, one hour by default. A stale
record is reclaimed with a warning that goes into the run's warnings; a holder that
keeps heartbeating is never taken over however long it runs. A holder that finds its
record replaced sets ``lost`` and must stop writing.

Why ``fcntl.flock`` directly and not ``filelock.FileLock``: the OS lock only guards the
read-check-write of the record, is tried with LOCK_NB and polled by our own loops
(``asyncio.sleep`` in async code), so filelock's timeouts add nothing; the record has to
be read and written through a descriptor of the lock path itself, one file that every
command uses; and filelock's soft fallback writes its own marker into the path and may
unlink it, which this path must never be. ``flock`` rather than ``fcntl.lockf`` because
POSIX record locks drop when *any* descriptor of the file closes in the process; a flock
belongs to one open file description, so each operation opens its own and instances and
threads exclude each other. POSIX only, like the worker. A process stopped inside the
microsecond guard blocks others until it resumes or dies; waiters then time out.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psutil

from testio_sync.errors import ConfigError, SyncLockedError
from testio_sync.sync.entity_locks import EntityLocks, held_entity_keys

# EntityLocks lives in its own module; it is re-exported here, beside SyncLock.
__all__ = ["EntityLocks", "SyncLock", "describe_holder", "is_stale", "read_holder"]

logger = logging.getLogger("testio_sync.lock")

_T = TypeVar("_T")
_BUSY: Any = object()  # another process is inside the guard right now
_MAX_RECORD_BYTES = 64 * 1024
# psutil adds the boot time to the start ticks, and clock adjustments nudge boot time.
_CREATE_TIME_TOLERANCE_S = 1.0
_RELEASE_PATIENCE_S = 10.0


@dataclass(frozen=True)
class _Snapshot:
    record: dict[str, Any] | None  # None: free, or unreadable
    unreadable: bool
    mtime: float


@dataclass(frozen=True)
class _Attempt:
    claimed: bool
    holder: dict[str, Any] | None = None
    warning: str | None = None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _epoch(value: Any) -> float | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _who(record: dict[str, Any]) -> str:
    return (
        f"PID {record.get('pid', '?')} (run {record.get('run_id', '?')}, "
        f"since {record.get('started_at', '?')})"
    )


def _open(path: Path, *, create: bool = False, write: bool = True) -> int:
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o600)
    if write and os.fstat(fd).st_mode & 0o777 != 0o600:
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
    return fd


def _try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    return True


def _read(fd: int) -> _Snapshot:
    text = os.pread(fd, _MAX_RECORD_BYTES, 0).decode("utf-8", "replace").strip()
    mtime = os.fstat(fd).st_mtime
    if not text:
        return _Snapshot(None, False, mtime)
    try:
        record = json.loads(text)
    except ValueError:
        return _Snapshot(None, True, mtime)
    if not isinstance(record, dict):
        return _Snapshot(None, True, mtime)
    return _Snapshot(record, False, mtime)


def _write(fd: int, record: dict[str, Any] | None) -> None:
    """Overwrite in place (same inode), then touch: the mtime is a heartbeat too."""
    data = b"" if record is None else (json.dumps(record, sort_keys=True) + "\n").encode()
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], written)
    os.ftruncate(fd, len(data))
    os.utime(fd)


def _guarded(path: Path, action: Callable[[int], _T], *, create: bool = False) -> _T:
    """Run ``action(fd)`` under the exclusive guard, or return ``_BUSY`` without waiting."""
    fd = _open(path, create=create)
    try:
        if not _try_flock(fd, fcntl.LOCK_EX):
            return _BUSY
        return action(fd)
    finally:
        os.close(fd)  # also drops the flock


def _holder_gone(record: dict[str, Any]) -> str | None:
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int) or pid <= 0 or host not in (None, socket.gethostname()):
        return None  # another machine's PID means nothing here: only the heartbeat counts
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return "holder is dead (a zombie process not yet reaped)"
        created = process.create_time()
    except psutil.NoSuchProcess:
        return "holder is dead"
    except psutil.AccessDenied:
        return None
    recorded = record.get("create_time")
    if isinstance(recorded, int | float) and abs(created - recorded) > _CREATE_TIME_TOLERANCE_S:
        return f"holder is dead (PID {pid} now belongs to another process)"
    return None


def is_stale(
    record: dict[str, Any], *, now: float, stale_after_s: float, mtime: float | None = None
) -> str | None:
    """Why the holder of ``record`` may be replaced, or None while it is alive.

    ``now`` and ``mtime`` are epoch seconds; the newer of the heartbeat field and the
    file mtime counts, so a holder showing any sign of life within the limit is kept.
    """
    if reason := _holder_gone(record):
        return reason
    signs = [t for t in (_epoch(record.get("heartbeat_at")), mtime) if t is not None]
    if signs and now - max(signs) > stale_after_s:
        return (
            f"holder is hung: no heartbeat for {_span(now - max(signs))} "
            f"(limit {_span(stale_after_s)})"
        )
    return None


def describe_holder(path: Path, *, stale_after_s: float = 3600.0) -> dict[str, Any] | None:
    """The holder record plus ``stale`` (reason or None); None when free. Changes nothing.

    An unreadable record also gives None: the next acquire replaces it.
    """
    try:
        fd = _open(Path(path), write=False)
    except FileNotFoundError:
        return None
    try:
        # A shared flock waits out a writer mid-update; give up after ~0.1 s rather than
        # stall a status display behind a stopped process.
        for _ in range(20):
            if _try_flock(fd, fcntl.LOCK_SH):
                break
            time.sleep(0.005)
        snapshot = _read(fd)
    finally:
        os.close(fd)
    if snapshot.record is None:
        return None
    stale = is_stale(
        snapshot.record, now=time.time(), stale_after_s=stale_after_s, mtime=snapshot.mtime
    )
    return {**snapshot.record, "stale": stale}


def read_holder(path: Path, *, stale_after_s: float = 3600.0) -> dict[str, Any] | None:
    """The live holder's record, or None when the lock is free or its holder stale."""
    described = describe_holder(path, stale_after_s=stale_after_s)
    if described is None or described.pop("stale"):
        return None
    return described


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

    def raise_if_lost(self) -> None:
        """Raises SyncLockedError if the lock was reclaimed; call before each write batch."""
        if self.lost:
            raise SyncLockedError(
                f"The sync lock at {self.path} was taken over"
                + (f" by {_who(self._lost_to)}" if self._lost_to else "")
                + f"; run {self.run_id} stopped writing.",
                holder=self._lost_to,
            )

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
        deadline = time.monotonic() + _RELEASE_PATIENCE_S
        while not self._try_release(give_up=time.monotonic() >= deadline):
            await asyncio.sleep(self.poll_s)

    def release_blocking(self) -> None:
        """Blocking ``release``."""
        if self._beat_task is not None:
            self._beat_task.cancel()
            self._beat_task = None
        self._stop_thread()
        deadline = time.monotonic() + _RELEASE_PATIENCE_S
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

    def _attempt(self) -> _Attempt:
        """One read-check-write of the record under the guard; never waits."""

        def claim(fd: int) -> _Attempt:
            snapshot, now, warning = _read(fd), time.time(), None
            if snapshot.unreadable:
                warning = f"Replaced an unreadable sync lock record at {self.path}"
            elif snapshot.record is not None:
                reason = is_stale(
                    snapshot.record, now=now, stale_after_s=self.stale_after_s, mtime=snapshot.mtime
                )
                if reason is None:
                    return _Attempt(False, holder=snapshot.record)
                warning = f"Reclaimed a stale sync lock held by {_who(snapshot.record)}: {reason}"
            record = {
                "pid": os.getpid(),
                "create_time": psutil.Process().create_time(),
                "host": socket.gethostname(),
                "run_id": self.run_id,
                "token": self._token,
                "started_at": _iso(now),
                "heartbeat_at": _iso(now),
            }
            _write(fd, record)
            self._record = record
            return _Attempt(True, warning=warning)

        try:
            attempt = _guarded(self.path, claim, create=True)
        except OSError as exc:
            raise ConfigError(f"Cannot use the sync lock file {self.path}: {exc.strerror}") from exc
        if attempt is _BUSY:
            return _Attempt(False)
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
                f"Timed out after {self.timeout_s:g} s waiting for the sync lock at {self.path}; "
                "another process kept it busy. Try again in a moment."
            )
        return SyncLockedError(
            f"Another sync holds the lock: {_who(holder)}, last heartbeat "
            f"{holder.get('heartbeat_at', '?')}. Gave up after {self.timeout_s:g} s; "
            "try again when it finishes.",
            holder=holder,
        )

    def _mark_lost(self, new_holder: dict[str, Any] | None) -> None:
        if self._lost.is_set():
            return
        self._lost_to = new_holder
        self._lost.set()
        message = f"Lost the sync lock at {self.path} for run {self.run_id}: " + (
            f"reclaimed by {_who(new_holder)}" if new_holder else "its record was removed"
        )
        self.warnings.append(message)
        logger.warning(message)

    def _beat_once(self) -> bool:
        """One heartbeat; False when the guard was busy and it should be retried soon."""

        def beat(fd: int) -> bool:
            snapshot = _read(fd)
            if snapshot.record is None or snapshot.record.get("token") != self._token:
                self._mark_lost(snapshot.record)
            else:
                record = {**snapshot.record, "heartbeat_at": _iso(time.time())}
                _write(fd, record)
                self._record = record
            return True

        try:
            return _guarded(self.path, beat) is not _BUSY
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
            snapshot = _read(fd)
            if snapshot.record is not None and snapshot.record.get("token") == self._token:
                _write(fd, None)
            else:
                self._mark_lost(snapshot.record)

        try:
            if _guarded(self.path, clear) is _BUSY:
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
