"""Start the huey consumer with the settings a sync worker needs.

One worker thread, so jobs run one at a time; pickup within 0.5 s when idle;
locks flushed at start (SQLite locks have no expiry). ``testio-sync worker``
and the MCP server's own worker both come through here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from huey.consumer import Consumer

from testio_sync.settings import Settings, touch_private
from testio_sync.tasks.liveness import worker_alive
from testio_sync.tasks.queue import configure, huey

WORKER_OPTIONS = {
    "workers": 1,
    "worker_type": "thread",
    "initial_delay": 0.05,
    "max_delay": 0.1,
    "backoff": 1.5,
    "flush_locks": True,
    "periodic": True,
}


def build_consumer(settings: Settings, **overrides: object) -> Consumer:
    configure(settings)
    return huey.create_consumer(**{**WORKER_OPTIONS, **overrides})


def run_worker(settings: Settings) -> None:
    """Run the consumer in this process until SIGINT/SIGTERM."""
    build_consumer(settings).run()


def spawn_worker(settings: Settings, *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a worker child process and wait until it is alive.

    ``-P`` and a module path inside the package: nothing in the caller's
    current folder (a ``tasks.py``) can run in its place.

    Raises:
        RuntimeError: the worker did not come up within 15 s.
    """
    settings.ensure_home()
    env = {**os.environ, **settings.to_env()}
    log = open(touch_private(log_path or settings.home / "worker.log"), "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "testio_sync.tasks"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    log.close()
    deadline = time.monotonic() + 15
    while not worker_alive(settings.worker_lock_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"The worker did not start; see {settings.home / 'worker.log'}")
        time.sleep(0.05)
    return proc
