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
    require_mirror,
    settings_or_exit,
)
from testio_sync.dates import utc_now
from testio_sync.settings import Settings
from testio_sync.store import queries


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
) -> None:
    """Show the mirror's state: data, freshness, worker, lock, runs. No API calls.

    With RUN_ID (printed by `sync --no-wait`), show that one run instead.

    Example:
        $ testio-sync status --json | jq .counts
        $ testio-sync status 3f2a9c01b7e4 --json
    """
    settings = settings_or_exit(create_home=False)
    require_mirror(settings)
    if run_id is not None:
        show_run(settings, run_id.strip(), json_output=json_output)
        return
    with reported_errors():
        data = open_service(settings).status()
    if json_output:
        typer.echo(render.to_json(data))
        return
    for line in render.status_lines(data, now=utc_now()):
        typer.echo(line)


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
