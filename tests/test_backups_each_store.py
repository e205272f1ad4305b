"""Backups on each store: a nuke and a removal write a backup file that ``restore`` puts back.

On PostgreSQL a backup is a copy of the mirror into a private SQLite file, and a
restore copies such a file back; the counts are the simulator's own.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from lock_holders import held_elsewhere, let_go
from testsupport import drop_products, make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store import queries, save
from testio_sync.store.backups import describe, list_backups
from testio_sync.store.copy import backup_store
from testio_sync.store.db import open_store
from testio_sync.sync import runs
from testio_sync.sync.restore import restore_backup

pytestmark = pytest.mark.usefixtures("store_backend")

ENTITIES = ("products", "tests", "bugs", "features", "users")


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args))


def counts(settings: Settings) -> dict[str, int]:
    open_store(settings)
    return queries.entity_counts()


def truth_counts(sim: Simulator) -> dict[str, int]:
    truth = sim.truth()
    return {name: truth[name] for name in ENTITIES}


def test_a_nuke_backs_up_to_a_file_that_restores(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    truth = truth_counts(tiny_server[0])
    assert invoke(settings, "sync", "--with-bugs", "--quiet").exit_code == 0
    nuked = invoke(settings, "sync", "--nuke", "--with-bugs", "--yes")
    assert nuked.exit_code == 0, nuked.output
    [backup] = list_backups(settings.backups_dir)
    assert backup.name.startswith("cache-before-nuke-") and f"{backup}" in nuked.stdout
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    listed = json.loads(invoke(settings, "backups", "--json").stdout)["backups"]
    assert [entry["counts"] for entry in listed] == [truth]

    save.wipe()
    assert counts(settings) == dict.fromkeys(ENTITIES, 0)
    restored = invoke(settings, "restore", "--yes", str(backup))
    assert restored.exit_code == 0, restored.output
    assert counts(settings) == truth
    assert len(runs.recent_runs(100)) == 2  # the run history stays as it was
    assert "The data from before" not in restored.stdout  # nothing was there to keep

    again = invoke(settings, "restore", "--yes", str(backup))  # now there is data to keep
    assert again.exit_code == 0, again.output
    assert f"Current data, backed up then replaced: {truth['products']} products" in (again.stdout)
    [before] = [p for p in list_backups(settings.backups_dir) if "before-restore" in p.name]
    assert describe(before).counts == truth
    assert counts(settings) == truth
    status = invoke(settings, "status", "--check")
    assert status.exit_code == 0, status.output  # the search index matches the rows


def test_a_removal_backs_up_to_a_file_that_restores(
    fresh_server: tuple[Simulator, str], home: Path
) -> None:
    sim, url = fresh_server
    settings = make_settings(home, url)
    before = truth_counts(sim)
    assert invoke(settings, "sync", "--with-bugs", "--quiet").exit_code == 0
    assert counts(settings) == before
    drop_products(sim, sorted(sim.world.products)[1:])
    removed = invoke(settings, "sync", "--force")
    assert removed.exit_code == 0, removed.output
    assert counts(settings)["products"] == 1
    [backup] = list_backups(settings.backups_dir)
    assert "before-removal" in backup.name and str(backup) in removed.stdout
    assert describe(backup).counts == before

    restored = invoke(settings, "restore", "--yes", str(backup))
    assert restored.exit_code == 0, restored.output
    assert counts(settings) == before


def test_an_unreadable_backup_changes_nothing(
    settings: Settings, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    assert invoke(settings, "sync", "--with-bugs", "--quiet").exit_code == 0
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    result = invoke(settings, "restore", "--yes", str(bad))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert counts(settings) == truth_counts(tiny_server[0])


def test_a_restore_takes_the_sync_lock_of_its_store(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """Another process (a sync on another worker or host) holds the lock: a restore waits.

    On PostgreSQL that is the advisory lock, which a file lock on this machine would miss.
    Past the lock wait it is refused (exit 4) naming the holder, and changes nothing.
    """
    assert invoke(settings, "sync", "--with-bugs", "--quiet").exit_code == 0
    truth = truth_counts(tiny_server[0])
    backup = backup_store(settings, settings.backups_dir / "cache-test.db")
    save.wipe()
    impatient = replace(settings, lock_timeout_s=1.0)
    with held_elsewhere(settings, "run-elsewhere") as proc:
        refused = invoke(impatient, "restore", "--yes", str(backup))
        assert refused.exit_code == 4, refused.output
        message = " ".join(refused.output.split())
        assert f"Another sync holds the lock: PID {proc.pid}" in message
        assert "run run-elsewhere" in message
        if settings.database_url is not None:
            assert f"PID {proc.pid} on {socket.gethostname()}" in message
        assert counts(settings) == dict.fromkeys(ENTITIES, 0)  # nothing restored
        assert [p for p in list_backups(settings.backups_dir) if "before-restore" in p.name] == []

        patient = replace(settings, lock_timeout_s=30.0)
        done: list[object] = []
        restoring = threading.Thread(target=lambda: done.append(restore_backup(patient, backup)))
        restoring.start()
        restoring.join(1.0)
        assert restoring.is_alive() and not done  # waiting for the holder
        assert counts(settings) == dict.fromkeys(ENTITIES, 0)
        assert let_go(proc) == "released"
        restoring.join(30)
    assert not restoring.is_alive() and len(done) == 1
    assert counts(settings) == truth
