"""Code that is not ours never runs as the worker: a ``tasks.py`` here, another ``tasks`` there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testio_sync.service import SyncService
from testio_sync.sync.types import SyncStatus

from .support import Workers

pytestmark = pytest.mark.faults

IMPOSTOR = """\
from pathlib import Path
Path({marker!r}).write_text("foreign code ran")
"""


def test_a_tasks_py_in_the_current_folder_never_runs_as_the_worker(
    settings, tmp_path, monkeypatch, worker_pool
):
    """The worker that ``serve`` and ``demo`` spawn is ours, whatever the current folder holds."""
    cwd, other_project = tmp_path / "project", tmp_path / "other"
    marker = tmp_path / "ran.txt"
    cwd.mkdir()
    (cwd / "tasks.py").write_text(IMPOSTOR.format(marker=str(marker)))
    (other_project / "tasks").mkdir(parents=True)
    (other_project / "tasks" / "__init__.py").write_text(IMPOSTOR.format(marker=str(marker)))
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PYTHONPATH", str(other_project))  # another project's ``tasks``
    workers: Workers = worker_pool(settings)
    workers.start()
    result = SyncService(settings).execute_sync().wait(60)
    assert result.status == SyncStatus.SUCCEEDED, result.errors
    assert not marker.exists(), workers.log()


def test_the_installed_package_brings_no_top_level_tasks_module(tmp_path):
    """Only ``testio_sync`` is installed: a bare ``tasks`` cannot collide with another project."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run(
        [sys.executable, "-P", "-c", "import importlib.util as u; print(u.find_spec('tasks'))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "None"


def test_the_checkouts_tasks_folder_is_an_alias_with_the_same_task_names():
    """``huey_consumer tasks.huey`` from a checkout runs the tasks the service enqueues."""
    import tasks
    from testio_sync import tasks as ours

    assert tasks.huey is ours.huey
    assert sorted(tasks.huey._registry._registry) == [
        "testio_sync.tasks.sync.background_sync",
        "testio_sync.tasks.sync.run_sync_job",
    ]
