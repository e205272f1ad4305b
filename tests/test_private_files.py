"""Every file testio-sync writes in its data directory is private: files 0600, directories 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from testio_sync.mcp_server import WorkerKeeper
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.sync.types import SyncOptions, SyncStatus


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual 022 umask, so a file created without care shows up as 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(home: Path) -> dict[str, str]:
    """Every entry under ``home`` whose mode lets anyone but the owner in."""
    loose = {}
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            loose[str(path.relative_to(home))] = oct(mode)
    return loose


def test_a_demo_like_run_leaves_only_private_files(settings: Settings, open_umask: None) -> None:
    """A server starting the worker, a sync through it and a nuke with its backup."""
    keeper = WorkerKeeper(settings)
    try:
        assert keeper.ensure()  # worker-start.lock, worker.lock, worker.log, queue.db
        service = SyncService(settings)
        assert service.execute_sync().wait(60).status == SyncStatus.SUCCEEDED
        nuke = service.execute_sync(options=SyncOptions(nuke=True)).wait(60)
        assert nuke.status == SyncStatus.SUCCEEDED, nuke.errors
        assert nuke.backup_path is not None
    finally:
        keeper.stop()
    names = {p.name for p in settings.home.rglob("*")}
    assert {"worker-start.lock", "worker.log", "cache.db", "queue.db"} <= names
    assert modes(settings.home) == {}
