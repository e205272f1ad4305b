"""``restore`` keeps the data it replaces and says what a backup holds; ``backups`` lists and
prunes them; restore's errors name the command and no temporary file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import peewee
import pytest
import typer
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.cli.render import format_counts
from testio_sync.cli.support import reported_errors
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store import queries
from testio_sync.store.backups import list_backups
from testio_sync.store.db import open_database

ENTITIES = ("products", "tests", "bugs", "features", "users")


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args))


def truth_counts(sim: Simulator) -> dict[str, int]:
    truth = sim.truth()
    return {name: truth[name] for name in ENTITIES}


def nuked_twice(settings: Settings) -> list[Path]:
    """Arrange: a synced mirror and two nukes, so two backups of the full data."""
    assert invoke(settings, "sync", "--with-bugs", "--quiet").exit_code == 0
    for _ in range(2):
        assert invoke(settings, "sync", "--nuke", "--yes", "--quiet").exit_code == 0
    backups = list_backups(settings.backups_dir)
    assert len(backups) == 2
    return backups


def test_restore_shows_what_the_backup_holds_and_backs_up_the_current_data_first(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """The backup's counts are the truth's; the replaced data lands in a new backup."""
    truth = truth_counts(tiny_server[0])
    oldest, newest = nuked_twice(settings)
    result = invoke(settings, "restore", str(oldest), "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Backup: {oldest}  (")
    assert f"): {format_counts(truth)}\n" in result.stdout
    [previous] = set(list_backups(settings.backups_dir)) - {oldest, newest}
    assert "before-restore" in previous.name
    assert f"The data from before is in {previous}" in result.stdout
    open_database(settings.db_path)
    assert queries.entity_counts() == truth


def test_backups_lists_what_each_holds_and_keeps_the_newest(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """``--json`` lists the two backups with the truth's counts; ``--keep 1`` deletes the older."""
    truth = truth_counts(tiny_server[0])
    oldest, newest = nuked_twice(settings)
    listed = invoke(settings, "backups", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert [b["path"] for b in data["backups"]] == [str(oldest), str(newest)]
    assert all(b["counts"] == truth for b in data["backups"])
    text = invoke(settings, "backups")
    assert text.stdout.splitlines()[0].endswith(f": {format_counts(truth)}")
    pruned = invoke(settings, "backups", "--keep", "1")
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout.splitlines()[0] == f"Deleted {oldest}"
    assert list_backups(settings.backups_dir) == [newest]
    assert invoke(settings, "backups", "--keep", "0").exit_code == 2


def test_restore_errors_name_restore_and_no_temporary_file(
    settings: Settings, tmp_path: Path
) -> None:
    """Not a database, or a newer schema: exit 1, one line with "restore", no temp path."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        for table in ("products", "tests", "bugs", "features", "users"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER)")
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    for backup in (garbage, newer, tmp_path / "missing.db"):
        result = invoke(settings, "restore", str(backup), "--yes")
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "restore" in result.stderr and str(backup) in result.stderr
        assert "restore.db" not in result.stderr and "tmp" not in result.stderr.replace(
            str(tmp_path), ""
        )
    assert list_backups(settings.backups_dir) == []  # an empty mirror needs no backup


def test_a_database_error_that_escapes_the_store_says_how_to_get_back(capsys) -> None:
    """A peewee error the store did not translate still ends in one line naming restore."""
    with pytest.raises(typer.Exit) as caught, reported_errors():
        raise peewee.DatabaseError("database disk image is malformed")
    assert caught.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: database disk image is malformed. The database is damaged")
    assert "`testio-sync restore`" in err and err.count("\n") == 1
