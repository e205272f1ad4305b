"""The sync lock's holder record on disk, and the rule that says when it is stale.

Holding the sync lock *is* having your record in ``<home>/sync.lock``: JSON with the
PID, the process start time (psutil ``create_time()``), host, run id, ``started_at``
and ``heartbeat_at``. Every read-check-write of it happens under a short
``fcntl.flock`` on the same file (``guarded``), tried non-blocking so that callers
poll with their own loops. ``flock`` rather than ``lockf``: POSIX record locks drop
when *any* descriptor of the file closes in the process; a flock belongs to one open
file description. The path is never unlinked or recreated.

Stale rule (``is_stale``): the holder is gone (dead, a zombie, or its PID now names a
process with another start time), or it showed no sign of life (the newer of its
heartbeat field and the file mtime) for ``stale_after_s``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil

from testio_sync.dates import parse_iso, to_stored

_T = TypeVar("_T")
BUSY: Any = object()  # another process is inside the guard right now
MAX_RECORD_BYTES = 64 * 1024
# psutil adds the boot time to the start ticks, and clock adjustments nudge boot time.
CREATE_TIME_TOLERANCE_S = 1.0
RELEASE_PATIENCE_S = 10.0


@dataclass(frozen=True)
class Snapshot:
    record: dict[str, Any] | None  # None: free, or unreadable
    unreadable: bool
    mtime: float


@dataclass(frozen=True)
class Attempt:
    claimed: bool
    holder: dict[str, Any] | None = None
    warning: str | None = None


def iso(ts: float) -> str:
    return to_stored(datetime.fromtimestamp(ts, UTC))


def epoch(value: Any) -> float | None:
    try:
        parsed = parse_iso(value)
    except (TypeError, ValueError, AttributeError):
        return None
    return parsed.timestamp() if parsed else None


def span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def who(record: dict[str, Any]) -> str:
    return (
        f"PID {record.get('pid', '?')} (run {record.get('run_id', '?')}, "
        f"since {record.get('started_at', '?')})"
    )


def open_fd(path: Path, *, create: bool = False, write: bool = True) -> int:
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o600)
    if write and os.fstat(fd).st_mode & 0o777 != 0o600:
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
    return fd


def try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    return True


def read_record(fd: int) -> Snapshot:
    text = os.pread(fd, MAX_RECORD_BYTES, 0).decode("utf-8", "replace").strip()
    mtime = os.fstat(fd).st_mtime
    if not text:
        return Snapshot(None, False, mtime)
    try:
        record = json.loads(text)
    except ValueError:
        return Snapshot(None, True, mtime)
    if not isinstance(record, dict):
        return Snapshot(None, True, mtime)
    return Snapshot(record, False, mtime)


def write_record(fd: int, record: dict[str, Any] | None) -> None:
    """Overwrite in place (same inode), then touch: the mtime is a heartbeat too."""
    data = b"" if record is None else (json.dumps(record, sort_keys=True) + "\n").encode()
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], written)
    os.ftruncate(fd, len(data))
    os.utime(fd)


def guarded(path: Path, action: Callable[[int], _T], *, create: bool = False) -> _T:
    """Run ``action(fd)`` under the exclusive guard, or return ``BUSY`` without waiting."""
    fd = open_fd(path, create=create)
    try:
        if not try_flock(fd, fcntl.LOCK_EX):
            return BUSY
        return action(fd)
    finally:
        os.close(fd)  # also drops the flock


def holder_gone(record: dict[str, Any]) -> str | None:
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
    if isinstance(recorded, int | float) and abs(created - recorded) > CREATE_TIME_TOLERANCE_S:
        return f"holder is dead (PID {pid} now belongs to another process)"
    return None


def is_stale(
    record: dict[str, Any], *, now: float, stale_after_s: float, mtime: float | None = None
) -> str | None:
    """Why the holder of ``record`` may be replaced, or None while it is alive.

    ``now`` and ``mtime`` are epoch seconds; the newer of the heartbeat field and the
    file mtime counts, so a holder showing any sign of life within the limit is kept.
    """
    if reason := holder_gone(record):
        return reason
    signs = [t for t in (epoch(record.get("heartbeat_at")), mtime) if t is not None]
    if signs and now - max(signs) > stale_after_s:
        return (
            f"holder is hung: no heartbeat for {span(now - max(signs))} "
            f"(limit {span(stale_after_s)})"
        )
    return None


def describe_holder(path: Path, *, stale_after_s: float = 3600.0) -> dict[str, Any] | None:
    """The holder record plus ``stale`` (reason or None) and ``silent_seconds`` (since its
    last sign of life); None when free. Changes nothing.

    An unreadable record also gives None: the next acquire replaces it.
    """
    try:
        fd = open_fd(Path(path), write=False)
    except FileNotFoundError:
        return None
    try:
        # A shared flock waits out a writer mid-update; give up after ~0.1 s rather than
        # stall a status display behind a stopped process.
        for _ in range(20):
            if try_flock(fd, fcntl.LOCK_SH):
                break
            time.sleep(0.005)
        snapshot = read_record(fd)
    finally:
        os.close(fd)
    if snapshot.record is None:
        return None
    now = time.time()
    stale = is_stale(snapshot.record, now=now, stale_after_s=stale_after_s, mtime=snapshot.mtime)
    signs = [t for t in (epoch(snapshot.record.get("heartbeat_at")), snapshot.mtime) if t]
    silent = round(max(0.0, now - max(signs)), 1) if signs else None
    return {**snapshot.record, "silent_seconds": silent, "stale": stale}


def read_holder(path: Path, *, stale_after_s: float = 3600.0) -> dict[str, Any] | None:
    """The live holder's record, or None when the lock is free or its holder stale."""
    described = describe_holder(path, stale_after_s=stale_after_s)
    if described is None or described.pop("stale"):
        return None
    described.pop("silent_seconds", None)
    return described
