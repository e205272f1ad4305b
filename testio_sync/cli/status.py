"""``testio-sync status`` and ``restore``: what the mirror holds; putting a backup back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from testio_sync.cli import render
from testio_sync.cli.backups import backup_line
from testio_sync.cli.support import (
    confirm_or_exit,
    open_service,
    reported_errors,
    settings_or_exit,
)
from testio_sync.dates import utc_now
from testio_sync.store.backups import damage_of, describe, list_backups
from testio_sync.sync.restore import pick_backup, restore_backup


def status(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the status as JSON on stdout.")
    ] = False,
) -> None:
    """Show the mirror's state: data, freshness, worker, lock, runs. No API calls.

    Example:
        $ testio-sync status --json | jq .counts
    """
    settings = settings_or_exit()
    with reported_errors():
        data = open_service(settings).status()
    if json_output:
        typer.echo(render.to_json(data))
        return
    for line in render.status_lines(data, now=utc_now()):
        typer.echo(line)


def restore(
    backup: Annotated[
        Path | None,
        typer.Argument(
            metavar="[BACKUP]",
            help="Backup file to restore. Default: the newest in <TESTIO_SYNC_HOME>/backups.",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="List the backups and exit.")] = False,
) -> None:
    """Put the data of a backup (written before each `sync --nuke`) back in place.

    Replaces the current products, features, tests, bugs and users with the
    backup's, after backing the current data up; the run history is kept. A
    damaged database is moved aside (kept) instead. Waits for a running sync.

    Example:
        $ testio-sync restore --list && testio-sync restore --yes
    """
    settings = settings_or_exit()
    with reported_errors():
        if list_only:
            paths = list_backups(settings.backups_dir)
            if not paths:
                typer.echo(f"No backups in {settings.backups_dir}.")
            for path in paths:
                typer.echo(backup_line(describe(path)))
            return
        info = pick_backup(settings, backup)
        typer.echo(f"Backup: {backup_line(info)}")
        damage = damage_of(settings.db_path)
        if damage is not None:
            typer.echo(
                f"The current database {settings.db_path} is damaged ({damage}): "
                "it is moved aside and kept."
            )
        elif settings.db_path.exists():
            current = describe(settings.db_path).counts or {}
            typer.echo(f"Current data, backed up then replaced: {render.format_counts(current)}")
        confirm_or_exit(
            "This replaces the current data with the backup's.", yes=yes, what="restore"
        )
        report = restore_backup(settings, info.path)
        typer.echo(f"Restored {info.path}: {render.format_counts(report.counts)}")
        if report.previous_backup is not None:
            typer.echo(f"The data from before is in {report.previous_backup}")
        if report.damaged_kept is not None:
            typer.echo(f"The damaged database is kept as {report.damaged_kept}")
