"""A damaged ``cache.db`` (truncated, or with pages zeroed) and a healthy backup.

``restore`` and ``restore --list`` must work without opening the damaged file,
``sync --nuke`` must start afresh, and every error that meets the damage must
say how to get back. The damaged file is always kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from testsupport import make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.db import close_database

from .support import differences, expected_ids, ids_in, store_problems

pytestmark = pytest.mark.faults

PAGE = 4096


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def zero_pages(path: Path) -> None:
    """Zero a run of pages from the second one on: the schema and early tables are lost."""
    with path.open("r+b") as f:
        f.seek(PAGE)
        f.write(b"\0" * PAGE * 24)


DAMAGE: dict[str, Callable[[Path], None]] = {"truncated": truncate, "zeroed": zero_pages}


def damaged_with_a_backup(settings: Settings, sim: Simulator, damage: str) -> dict:
    """Arrange: a synced mirror, a nuke (its backup holds the same data), then damage."""
    assert invoke(settings, "sync", "--with-bugs", "--quiet").exit_code == 0
    nuked = invoke(settings, "sync", "--nuke", "--yes", "--quiet")
    assert nuked.exit_code == 0, nuked.output
    before = ids_in(settings.db_path)
    assert differences(before, expected_ids(sim)) == {}
    close_database(settings.db_path)  # as a new process would, open it afresh
    DAMAGE[damage](settings.db_path)
    return before


def kept_damaged(settings: Settings) -> list[Path]:
    return sorted(settings.home.glob("cache-damaged-*.db"))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_restore_puts_a_damaged_database_right_from_a_backup(
    fresh_server: tuple[Simulator, str], home: Path, damage: str
) -> None:
    """Errors name `testio-sync restore`; ``--list`` and ``restore --yes`` work; the damaged
    file is kept; afterwards the store holds the data from before, undamaged."""
    sim, url = fresh_server
    settings = make_settings(home, url)
    before = damaged_with_a_backup(settings, sim, damage)
    size = settings.db_path.stat().st_size
    status = invoke(settings, "status")
    assert status.exit_code == 1
    assert "damaged" in status.stderr and "`testio-sync restore`" in status.stderr
    assert "Traceback" not in status.output
    listed = invoke(settings, "restore", "--list")
    assert listed.exit_code == 0, listed.output
    assert "cache-before-nuke-" in listed.stdout
    restored = invoke(settings, "restore", "--yes")
    assert restored.exit_code == 0, restored.output
    assert "is damaged" in restored.stdout
    [kept] = kept_damaged(settings)
    assert kept.stat().st_size == size
    assert f"The damaged database is kept as {kept}" in restored.stdout
    assert ids_in(settings.db_path) == before
    assert store_problems(settings.db_path) == []
    assert invoke(settings, "status").exit_code == 0


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_nuke_on_a_damaged_database_sets_it_aside_and_syncs_the_truth(
    fresh_server: tuple[Simulator, str], home: Path, damage: str
) -> None:
    """``sync --nuke --yes``: exit 0, the damaged file kept, the store equal to the truth."""
    sim, url = fresh_server
    settings = make_settings(home, url)
    damaged_with_a_backup(settings, sim, damage)
    result = invoke(settings, "sync", "--nuke", "--yes")
    assert result.exit_code == 0, result.output
    assert "is damaged" in result.stdout
    assert len(kept_damaged(settings)) == 1
    assert differences(ids_in(settings.db_path), expected_ids(sim)) == {}
    assert store_problems(settings.db_path) == []
