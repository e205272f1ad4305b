"""Start the huey consumer with the settings a sync worker needs.

One worker thread, so jobs run one at a time; pickup within 0.5 s when idle;
locks flushed at start (SQLite locks have no expiry). ``testio-sync worker``
and the MCP server's own worker both come through here.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from filelock import Timeout
from huey.consumer import Consumer

from testio_sync.settings import Settings, touch_private
from testio_sync.tasks.liveness import release_worker_lock, worker_alive, worker_jobs
from testio_sync.tasks.queue import configure, huey
from testio_sync.tasks.users import ATTENDED_ENV, live_users, start_guard

logger = logging.getLogger("testio_sync.worker")

IDLE_POLL_S = 0.5
_running: Consumer | None = None

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


def run_worker(settings: Settings, *, attended: bool | None = None) -> None:
    """Run the consumer in this process until SIGINT/SIGTERM (or, attended, until unused).

    An attended worker (started by an MCP server, ``ATTENDED_ENV=1``) also stops
    by itself once it is idle and no server is registered as its user.
    """
    global _running
    consumer = build_consumer(settings)
    if attended is None:
        attended = os.environ.get(ATTENDED_ENV) == "1"
    if attended:
        threading.Thread(
            target=_stop_when_unused, args=(settings, consumer), name="idle-watch", daemon=True
        ).start()
    _running = consumer
    try:
        consumer.run()
    finally:
        _running = None


def stop_worker() -> None:
    """Ask this process's worker to stop after the current job (no-op outside ``run_worker``)."""
    if _running is not None:
        os.kill(os.getpid(), signal.SIGINT)  # the consumer's handler: a graceful stop


def _stop_when_unused(settings: Settings, consumer: Consumer, poll_s: float = IDLE_POLL_S) -> None:
    """Stop the worker once no server uses it and it has nothing to do.

    The decision and the release of the worker lock happen under the start guard,
    so a server registering at that moment either keeps this worker or starts a new one.
    """
    while not consumer.stop_flag.is_set():
        time.sleep(poll_s)
        try:
            with start_guard(settings, timeout_s=poll_s):
                if (
                    live_users(settings)
                    or worker_jobs(settings.worker_lock_path)
                    or huey.pending_count()
                ):
                    continue
                release_worker_lock(settings.worker_lock_path)
        except Timeout:
            continue
        logger.info("no server uses this worker and it is idle: stopping")
        stop_worker()
        return


def spawn_worker(
    settings: Settings, *, log_path: Path | None = None, attended: bool = False
) -> subprocess.Popen[bytes]:
    """Start a worker child process and wait until it is alive.

    ``-P`` and a module path inside the package: nothing in the caller's
    current folder (a ``tasks.py``) can run in its place.

    ``attended``: the worker stops by itself when idle and unused (see ``testio_sync.tasks.users``).

    Raises:
        RuntimeError: the worker did not come up within 15 s.
    """
    settings.ensure_home()
    env = {**os.environ, **settings.to_env()}
    log = open(touch_private(log_path or settings.home / "worker.log"), "ab")  # noqa: SIM115
    if attended:
        env[ATTENDED_ENV] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "testio_sync.tasks"],
        env=env,
        start_new_session=True,  # a Ctrl-C meant for the caller must not cut a running sync
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
