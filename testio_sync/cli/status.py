"""``testio-sync status`` and ``restore``: what the mirror holds; putting a backup back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from testio_sync.cli import render
from testio_sync.cli.support import (
    confirm_or_exit,
    fail,
    open_service,
    reported_errors,
    settings_or_exit,
)
from testio_sync.dates import utc_now
from testio_sync.store import queries, save


def status(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the status as JSON on stdout.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Also compare the search index with the data; exit 1 if they differ."
        ),
    ] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="With --check: rebuild a differing search index.")
    ] = False,
) -> None:
    """Show the mirror's state: data, freshness, worker, lock, runs. No API calls.

    Example:
        $ testio-sync status --json | jq .counts && testio-sync status --check
    """
    settings = settings_or_exit()
    with reported_errors():
        data = open_service(settings).status()
        index = queries.check_search_index() if check else None
        if index is not None and not index.ok and repair:
            typer.echo(render.index_check_line(index.to_dict()), err=True)
            save.rebuild_search_index()
            index = queries.check_search_index()
    if index is not None:
        data["search_index"] = index.to_dict()
    if json_output:
        typer.echo(render.to_json(data))
    else:
        for line in render.status_lines(data, now=utc_now()):
            typer.echo(line)
        if index is not None:
            typer.echo(render.index_check_line(index.to_dict()))
    if index is not None and not index.ok:
        raise typer.Exit(1)


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
    backup's; the run history is kept. Waits for a running sync to finish.

    Example:
        $ testio-sync restore --list && testio-sync restore --yes
    """
    settings = settings_or_exit()
    with reported_errors():
        service = open_service(settings)
        backups = service.list_backups()
        if list_only:
            if not backups:
                typer.echo(f"No backups in {settings.backups_dir}.")
            for path in backups:
                typer.echo(f"{path}  ({render.format_bytes(path.stat().st_size)})")
            return
        if backup is None:
            if not backups:
                fail(f"no backup found in {settings.backups_dir}.")
            backup = backups[-1]
        if not backup.is_file():
            fail(f"no backup at {backup}.")
        typer.echo(f"Backup: {backup} ({render.format_bytes(backup.stat().st_size)})")
        typer.echo(f"Current data, to be replaced: {render.format_counts(queries.entity_counts())}")
        confirm_or_exit(
            "This replaces the current data with the backup's.", yes=yes, what="restore"
        )
        restored = service.restore(backup)
        typer.echo(f"Restored {restored}: {render.format_counts(queries.entity_counts())}")
