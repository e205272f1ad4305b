"""``testio-sync backups``: list the backups with what each holds, and prune old ones.

Backups are read with plain SQLite, never through the live database, so this
works when ``cache.db`` is damaged: exactly when a backup is wanted.
"""

from __future__ import annotations

from typing import Annotated

import typer

from testio_sync.cli import render
from testio_sync.cli.support import reported_errors, settings_or_exit
from testio_sync.store.backups import BackupInfo, describe, list_backups, prune


def backup_line(info: BackupInfo) -> str:
    """``<path>  (1.2 MB): 6 products, 724 tests, ...`` or why it cannot be read."""
    held = render.format_counts(info.counts) if info.counts is not None else info.problem
    return f"{info.path}  ({render.format_bytes(info.size_bytes)}): {held}"


def backups(
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep", metavar="N", min=1, help="Delete all but the N newest backups first."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the backups (and what was deleted) as JSON.")
    ] = False,
) -> None:
    """List the backups (oldest first) with what each holds; prune old ones with --keep.

    A backup is written before every `sync --nuke`, every `restore`, and every
    removal of products no longer listed upstream. `testio-sync restore` puts one back.

    Example:
        $ testio-sync backups --keep 5
    """
    settings = settings_or_exit()
    with reported_errors():
        deleted = prune(settings.backups_dir, keep) if keep is not None else []
        infos = [describe(path) for path in list_backups(settings.backups_dir)]
    if json_output:
        payload = {
            "backups_dir": str(settings.backups_dir),
            "backups": [info.to_dict() for info in infos],
            "deleted": [str(path) for path in deleted],
        }
        typer.echo(render.to_json(payload))
        return
    for path in deleted:
        typer.echo(f"Deleted {path}")
    if not infos:
        typer.echo(f"No backups in {settings.backups_dir}.")
    for info in infos:
        typer.echo(backup_line(info))
