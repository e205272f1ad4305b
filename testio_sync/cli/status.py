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
    require_mirror,
    settings_or_exit,
)
from testio_sync.dates import utc_now
from testio_sync.settings import Settings
from testio_sync.store import queries, save
from testio_sync.store.backups import damage_of, describe, list_backups
from testio_sync.store.db import open_store
from testio_sync.sync.restore import pick_backup, restore_backup


def status(
    run_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN_ID]",
            help="Show only this run: its progress, or its result once finished.",
            show_default=False,
        ),
    ] = None,
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

    With RUN_ID (printed by `sync --no-wait`), show that one run instead.

    Example:
        $ testio-sync status --json | jq .counts && testio-sync status --check
        $ testio-sync status 3f2a9c01b7e4 --json
    """
    settings = settings_or_exit(create_home=False)
    require_mirror(settings)
    if run_id is not None:
        show_run(settings, run_id.strip(), json_output=json_output)
        return
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


def show_run(settings: Settings, run_id: str, *, json_output: bool) -> None:
    """``status RUN_ID``: one run's progress or result (an unknown id exits 2)."""
    with reported_errors():
        view = open_service(settings).handle(run_id).poll(check_owner=True)
    if json_output:
        typer.echo(render.to_json(view.to_dict()))
        return
    for line in render.run_lines(view):
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
        damage = None if settings.database_url else damage_of(settings.db_path)
        if damage is not None:
            typer.echo(
                f"The current database {settings.db_path} is damaged ({damage}): "
                "it is moved aside and kept."
            )
        elif settings.database_url is not None:
            open_store(settings)
            current = queries.entity_counts()
            typer.echo(f"Current data, backed up then replaced: {render.format_counts(current)}")
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
