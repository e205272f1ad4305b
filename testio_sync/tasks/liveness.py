"""Is a worker alive? A worker holds an OS lock on ``worker.lock`` while it runs.

The kernel drops the lock when the process dies, however it dies, so the
answer is never stale. Callers only probe: they never keep the lock.

The lock file also says which run the worker is executing (``worker_job``):
huey takes a job off the queue before the job can claim its row, and a run
that is neither queued nor claimed is only lost when no worker executes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from testio_sync.settings import touch_private

RECORD_BYTES = 256
_held: dict[str, int] = {}
_start_time: float | None = None


def hold_worker_lock(path: Path, *, patience_s: float = 2.0) -> bool:
    """Take the worker lock for this process; False when another worker has it.

    A ``worker_alive`` probe holds the lock shared for an instant, so a failed
    attempt is retried for ``patience_s``: only a real worker holds it that long.
    """
    key = str(path)
    if key in _held:
        return True
    fd = os.open(touch_private(path), os.O_RDWR)
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(0.01)
    os.ftruncate(fd, 0)
    _held[key] = fd
    _write_record(fd, None)
    return True


def _write_record(fd: int, run_id: str | None) -> None:
    """One fixed-size write, so a reader never sees half a record."""
    record = {"pid": os.getpid(), "started_at": _started_at(), "run_id": run_id}
    os.pwrite(fd, json.dumps(record).encode().ljust(RECORD_BYTES), 0)


def _started_at() -> float:
    global _start_time
    if _start_time is None:
        _start_time = time.time()
    return _start_time


def set_worker_job(path: Path, run_id: str | None) -> None:
    """Record the run this worker executes now (None when idle); no-op unless it holds the lock."""
    fd = _held.get(str(path))
    if fd is not None:
        _write_record(fd, run_id)


def worker_job(path: Path) -> str | None:
    """The run id a live worker says it is executing, if any."""
    if not worker_alive(path):
        return None
    return _record(path).get("run_id")


def _record(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text() or "{}")
    except (ValueError, OSError):
        return {}
    return found if isinstance(found, dict) else {}


def release_worker_lock(path: Path) -> None:
    fd = _held.pop(str(path), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def worker_alive(path: Path) -> bool:
    """True when some process (this one included) holds the worker lock."""
    if str(path) in _held:
        return True
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def worker_pid(path: Path) -> int | None:
    """The PID the live worker wrote into its lock file, if a worker is alive."""
    if not worker_alive(path):
        return None
    try:
        return int(_record(path).get("pid"))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None
