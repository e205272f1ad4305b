"""The sync lock of a test's store, held by a separate process (another worker, another host).

SQLite: ``sync/lock_holder.py`` holds the file lock; PostgreSQL: ``sync/pg_lock_holder.py``
holds the advisory lock and its ``sync_lock`` row. Tests stop (SIGSTOP) or kill it to play
a hung or crashed holder, or close its stdin to let it release.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testio_sync.settings import Settings

TESTS = Path(__file__).resolve().parent


@contextmanager
def holder_process(
    script: Path, where: str | Path, run_id: str, heartbeat_s: float = 600.0
) -> Iterator[subprocess.Popen[str]]:
    """``script`` holding the lock at ``where`` until its stdin closes; killed at the end."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    command = [sys.executable, str(script), str(where), run_id, str(heartbeat_s)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "held"
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a stopped holder, to play a hung one
                proc.kill()
            proc.wait(timeout=10)


@contextmanager
def held_elsewhere(
    settings: Settings, run_id: str, *, heartbeat_s: float = 600.0
) -> Iterator[subprocess.Popen[str]]:
    """A process holding ``settings``' sync lock until its stdin closes; killed at the end."""
    settings.ensure_home()
    if settings.database_url is None:
        script, where = TESTS / "sync" / "lock_holder.py", str(settings.lock_path)
    else:
        script, where = TESTS / "sync" / "pg_lock_holder.py", settings.database_url.reveal()
    with holder_process(script, where, run_id, heartbeat_s) as proc:
        yield proc


def let_go(proc: subprocess.Popen[str]) -> str:
    """Close the holder's stdin: it releases and says ``released`` (or ``lost``)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    return proc.stdout.readline().strip()
