"""Is a worker alive? A worker holds an OS lock on ``worker.lock`` while it runs.

The kernel drops the lock when the process dies, however it dies, so the
answer is never stale. Callers only probe: they never keep the lock. On a shared
queue more workers may run for one data directory: each extra one holds a slot
``worker.N.lock`` of its own, and a probe looks at every slot.

A slot's file also says which run its worker is executing (``worker_jobs``):
huey takes a job off the queue before the job can claim its row, and a run
that is neither queued nor claimed is only lost when no worker executes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testio_sync.settings import touch_private

RECORD_BYTES = 256
WORKER_SLOTS = 8  # workers one data directory may hold on a shared queue
_held: dict[str, int] = {}
_start_time: float | None = None


def slot_path(path: Path, slot: int) -> Path:
    """``worker.lock`` for slot 0, ``worker.N.lock`` for the others."""
    return path if slot == 0 else path.with_name(f"{path.stem}.{slot}{path.suffix}")


def worker_lock_paths(path: Path) -> list[Path]:
    return [slot_path(path, slot) for slot in range(WORKER_SLOTS)]


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


def hold_worker_slot(path: Path) -> Path | None:
    """Take the first free worker slot (for a shared queue); None when all are taken."""
    for slot in range(WORKER_SLOTS):
        candidate = slot_path(path, slot)
        if hold_worker_lock(candidate, patience_s=2.0 if slot == 0 else 0.2):
            return candidate
    return None


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
    """Record the run this worker executes now (None when idle) in the slot it holds."""
    for candidate in worker_lock_paths(path):
        fd = _held.get(str(candidate))
        if fd is not None:
            _write_record(fd, run_id)


def worker_jobs(path: Path) -> set[str]:
    """The run ids the live workers say they are executing."""
    found = set()
    for candidate in worker_lock_paths(path):
        if _slot_alive(candidate) and (run_id := _record(candidate).get("run_id")):
            found.add(run_id)
    return found


def _record(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text() or "{}")
    except (ValueError, OSError):
        return {}
    return found if isinstance(found, dict) else {}


def release_worker_lock(path: Path) -> None:
    """Release whichever worker slot of ``path`` this process holds."""
    for candidate in worker_lock_paths(path):
        fd = _held.pop(str(candidate), None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextmanager
def exclusive(path: Path) -> Iterator[bool]:
    """Hold ``path`` exclusively if no other holder (thread or process) has it; yields whether.

    A descriptor of its own each time: two threads of one process exclude each other too.
    """
    fd = os.open(touch_private(path), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing drops the lock


def worker_alive(path: Path) -> bool:
    """True when some process (this one included) holds a worker slot."""
    return any(_slot_alive(candidate) for candidate in worker_lock_paths(path))


def _slot_alive(path: Path) -> bool:
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


def worker_pids(path: Path) -> list[int]:
    """The PIDs the live workers wrote into their slots."""
    pids = []
    for candidate in worker_lock_paths(path):
        if not _slot_alive(candidate):
            continue
        try:
            pids.append(int(_record(candidate).get("pid")))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            continue
    return pids


def worker_pid(path: Path) -> int | None:
    """The PID the first live worker wrote into its lock file, if a worker is alive."""
    pids = worker_pids(path)
    return pids[0] if pids else None
