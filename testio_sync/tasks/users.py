"""Who uses a shared worker: MCP servers register here, the worker they started counts them.

A server that starts a worker cannot stop it on exit: other servers may be using
it, and a sync may be running. Instead each server leaves a file named after its
PID (and start time, so a reused PID does not count) in ``worker-users/``; an
attended worker (``ATTENDED_ENV``) exits by itself once it is idle and no live
process is left there. Entries of dead processes are ignored and removed, so a
server killed with SIGKILL does not keep the worker alive for ever.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import psutil
from filelock import FileLock

from testio_sync.settings import Settings, touch_private

ATTENDED_ENV = "TESTIO_SYNC_WORKER_ATTENDED"
START_TIMEOUT_S = 30.0


def users_dir(settings: Settings) -> Path:
    return settings.home / "worker-users"


def start_guard(settings: Settings, timeout_s: float = START_TIMEOUT_S) -> FileLock:
    """The lock under which a worker is started, or decides to exit for lack of users."""
    settings.ensure_home()
    path = touch_private(settings.home / "worker-start.lock")
    return FileLock(str(path), timeout=timeout_s, mode=0o600)


def _process_key(pid: int) -> str | None:
    try:
        return f"{pid}-{round(psutil.Process(pid).create_time() * 1000)}"
    except psutil.Error:
        return None


def register_user(settings: Settings) -> Path:
    """Record a user of the shared worker in this process; returns its own entry.

    One entry per call (a process may hold several servers), named
    ``<pid>-<start ms>-<random>`` so that only a live process keeps it.
    """
    folder = users_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{_process_key(os.getpid())}-{secrets.token_hex(4)}"
    return touch_private(folder / name)


def unregister_user(entry: Path) -> None:
    entry.unlink(missing_ok=True)


def live_users(settings: Settings) -> list[int]:
    """PIDs of live registered users; entries of dead processes are removed."""
    folder = users_dir(settings)
    if not folder.is_dir():
        return []
    alive = []
    for entry in folder.iterdir():
        pid_text, owner = entry.name.partition("-")[0], entry.name.rpartition("-")[0]
        if pid_text.isdigit() and _process_key(int(pid_text)) == owner:
            alive.append(int(pid_text))
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return alive
