"""Is a worker alive? A worker holds an OS lock on ``worker.lock`` while it runs.

The kernel drops the lock when the process dies, however it dies, so the
answer is never stale. Callers only probe: they never keep the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from testio_sync.settings import touch_private

_held: dict[str, int] = {}


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
    os.write(fd, json.dumps({"pid": os.getpid(), "started_at": time.time()}).encode())
    _held[key] = fd
    return True


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
        return int(json.loads(path.read_text() or "{}").get("pid"))
    except (ValueError, TypeError, OSError):
        return None
