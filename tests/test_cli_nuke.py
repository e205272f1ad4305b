"""``sync --nuke`` and ``restore`` through the CLI: preview, confirmation, backup, restore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.cli import support as cli_support
from testio_sync.cli.render import format_counts
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store import queries
from testio_sync.store.db import open_database
from testio_sync.sync import runs

ENTITIES = ("products", "tests", "bugs", "features", "users")


def invoke(settings: Settings, *args: str, input: str | None = None) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args), input=input)


def counts(settings: Settings, product_ids: list[int] | None = None) -> dict[str, int]:
    open_database(settings.db_path)
    return queries.entity_counts(product_ids)


def run_count(settings: Settings) -> int:
    open_database(settings.db_path)
    return len(runs.recent_runs(10_000))


def synced(settings: Settings) -> dict[str, int]:
    """Arrange: a full sync with bugs; returns the counts it left."""
    result = invoke(settings, "sync", "--with-bugs", "--quiet")
    assert result.exit_code == 0, result.output
    return counts(settings)


def backup_line(output: str) -> Path:
    """The backup path the nuke preview announced."""
    for line in output.splitlines():
        if line.startswith("Backup first to: "):
            return Path(line.removeprefix("Backup first to: "))
    raise AssertionError(f"no backup line in {output!r}")


def test_nuke_shows_the_data_backs_it_up_and_resyncs_to_the_truth(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """The preview counts every entity with separators; afterwards the mirror equals the source."""
    before = synced(settings)
    result = invoke(settings, "sync", "--nuke", "--with-bugs", "--yes")
    assert result.exit_code == 0, result.output
    assert f"Current data: {format_counts(before)}" in result.stdout
    assert "Database: " in result.stdout
    assert backup_line(result.stdout).is_file()
    truth = tiny_server[0].truth()
    assert counts(settings) == {name: truth[name] for name in ENTITIES}


def test_nuke_with_product_ids_previews_and_wipes_only_those_products(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """A scoped nuke counts and deletes one product, and brings all of it back, bugs included
    (without ``--with-bugs``); the others keep their rows."""
    synced(settings)
    truth = tiny_server[0].truth()
    ids = sorted(int(pid) for pid in truth["per_product"])
    target, others = ids[0], ids[1:]
    scoped_before, others_before = counts(settings, [target]), counts(settings, others)
    assert scoped_before["bugs"] == truth["per_product"][str(target)]["bugs"] > 0
    result = invoke(settings, "sync", "--nuke", "--product-ids", str(target), "--yes")
    assert result.exit_code == 0, result.output
    assert f"Current data of products {target}: {format_counts(scoped_before)}" in result.stdout
    assert counts(settings, others) == others_before
    assert counts(settings, [target]) == scoped_before


def test_the_nuke_writes_the_backup_its_preview_named_and_shows_it_as_information(
    settings: Settings,
) -> None:
    """One backup file, the one announced; the summary names it, not as a warning."""
    synced(settings)
    result = invoke(settings, "sync", "--nuke", "--yes")
    assert result.exit_code == 0, result.output
    announced = backup_line(result.stdout)
    assert list(settings.backups_dir.glob("*.db")) == [announced]
    assert f"Backup of the previous data: {announced}" in result.stdout.splitlines()
    assert "Warnings" not in result.stdout


def test_nuke_without_yes_and_no_terminal_refuses_and_changes_nothing(settings: Settings) -> None:
    """Piped stdin cannot confirm: exit 2, no run, no backup."""
    before = synced(settings)
    runs_before = run_count(settings)
    result = invoke(settings, "sync", "--nuke")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --nuke replaces the local data: pass --yes")
    assert run_count(settings) == runs_before
    assert counts(settings) == before
    assert list(settings.backups_dir.glob("*.db")) == []


def test_nuke_on_a_terminal_goes_on_only_after_yes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any answer but ``yes`` cancels (exit 1, nothing changed); ``yes`` proceeds."""
    synced(settings)
    runs_before = run_count(settings)
    monkeypatch.setattr(cli_support, "stdin_is_interactive", lambda: True)
    declined = invoke(settings, "sync", "--nuke", input="no\n")
    assert declined.exit_code == 1
    assert "Type 'yes' to go on" in declined.stderr
    assert "Cancelled: nothing was changed." in declined.stderr
    assert run_count(settings) == runs_before
    accepted = invoke(settings, "sync", "--nuke", input="yes\n")
    assert accepted.exit_code == 0, accepted.output
    assert run_count(settings) == runs_before + 1


def test_nuke_dry_run_previews_and_changes_nothing(settings: Settings) -> None:
    """``--nuke --dry-run --json`` carries the preview; no backup, no run."""
    before = synced(settings)
    runs_before = run_count(settings)
    result = invoke(settings, "sync", "--nuke", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["mode"] == "nuke"
    assert plan["nuke_preview"]["counts"] == before
    assert run_count(settings) == runs_before
    assert list(settings.backups_dir.glob("*.db")) == []


def test_restore_brings_back_the_counts_from_before_the_nuke(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """After a nuke, ``restore --yes`` puts the data of before back."""
    before = synced(settings)
    target = min(int(pid) for pid in tiny_server[0].truth()["per_product"])
    nuked = invoke(settings, "sync", "--nuke", "-p", str(target), "--yes", "--quiet")
    assert nuked.exit_code == 0, nuked.output
    listed = invoke(settings, "restore", "--list")
    assert listed.exit_code == 0
    assert "cache-before-nuke-" in listed.stdout
    result = invoke(settings, "restore", "--yes")
    assert result.exit_code == 0, result.output
    assert f"Restored {settings.backups_dir}" in result.stdout
    assert counts(settings) == before


def test_a_failed_nuke_says_where_the_backup_is_and_how_to_restore(
    home: Path, fresh_server: tuple[Simulator, str]
) -> None:
    """Token revoked mid-way: exit 1, the backup path and the restore command are shown."""
    sim, base_url = fresh_server
    settings = make_settings(home, base_url)
    before = synced(settings)
    sim.update_faults(token_revoked=True)
    result = invoke(settings, "sync", "--nuke", "--yes")
    assert result.exit_code == 1, result.output
    backup = backup_line(result.stdout)
    assert backup.is_file()
    assert f"testio-sync restore {backup}" in result.stdout
    restored = invoke(settings, "restore", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    assert counts(settings) == before


def test_restore_without_a_backup_fails_cleanly(settings: Settings) -> None:
    """No backup yet: one error line, exit 1."""
    result = invoke(settings, "restore", "--yes")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: restore: no backup found in ")
    assert "Traceback" not in result.output


def test_restore_without_yes_and_no_terminal_refuses(settings: Settings) -> None:
    """Restore replaces data, so piped stdin without ``--yes`` is refused (exit 2)."""
    before = synced(settings)
    invoke(settings, "sync", "--nuke", "--yes", "--quiet")
    result = invoke(settings, "restore")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: restore replaces the local data")
    assert counts(settings)["tests"] == before["tests"]
