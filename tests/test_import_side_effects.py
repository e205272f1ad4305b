"""Importing the package creates no file; the queue's file appears on first real use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from testsupport import wait_for

MODULES = (
    "tasks",
    "testio_sync.tasks",
    "testio_sync.tasks.consumer",
    "testio_sync.service",
    "testio_sync.cli.app",
    "testio_sync.mcp_server.server",
)


def run_python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TESTIO_SYNC_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_importing_every_entry_module_creates_no_file(tmp_path: Path) -> None:
    """The default data directory is not even created by an import."""
    home = tmp_path / "home"
    done = run_python(";".join(f"import {m}" for m in MODULES), home)
    assert done.returncode == 0, done.stderr
    assert not home.exists()


def test_the_queue_file_is_made_private_on_first_use(tmp_path: Path) -> None:
    """The first enqueue-side call creates ``queue.db`` (0600) with huey's tables."""
    home = tmp_path / "home"
    done = run_python("import tasks; print(len(tasks.huey.pending()))", home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert (home / "queue.db").stat().st_mode & 0o777 == 0o600


def test_huey_consumer_still_runs_on_the_lazy_queue(tmp_path: Path) -> None:
    """``huey_consumer tasks.huey`` starts and polls the queue, which creates its file."""
    home = tmp_path / "home"
    consumer = shutil.which("huey_consumer", path=str(Path(sys.executable).parent))
    assert consumer is not None
    env = {**os.environ, "TESTIO_SYNC_HOME": str(home), "TESTIO_REFRESH_INTERVAL_SECONDS": "0"}
    proc = subprocess.Popen(
        [consumer, "tasks.huey", "-w", "1", "-k", "thread", "-d", "0.05", "-m", "0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (home / "queue.db").exists(), timeout_s=15, what="queue.db")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
