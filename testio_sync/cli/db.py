"""``testio-sync db copy``: the mirror copied to another store (SQLite <-> PostgreSQL).

The copy itself is ``store.copy.copy_store``; this module parses the target,
shows progress on stderr and prints the per-table counts.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from testio_sync.cli import render
from testio_sync.cli.support import reported_errors, require_mirror, settings_or_exit
from testio_sync.store.copy import CopyReport, copy_store, parse_store, store_of
from testio_sync.store.db import open_store

DB_HELP = """Work on the mirror's store itself: copy it to another store.

Example:
    $ testio-sync db copy --to postgresql://testio@db.example.com/testio
"""
PROGRESS_EVERY_S = 1.0


class CopyProgress:
    """One line on stderr per table, and one per second while a long table is copied."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._last = 0.0

    def __call__(self, table: str, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if done == total or (done and now - self._last >= PROGRESS_EVERY_S):
            self._last = now
            print(f"  {table}: {done:,} of {total:,} rows", file=sys.stderr, flush=True)


def copy_lines(report: CopyReport) -> list[str]:
    """The summary and the per-table counts, as ``db copy`` prints them."""
    data: dict[str, Any] = report.to_dict()
    lines = [
        f"Copied {data['source']} to {data['target']}: {data['rows']:,} rows in "
        f"{data['seconds']:.1f} s ({data['rows_per_second']:,} rows/s).",
        f"{'table':<16}{'source':>12}{'copy':>12}  check",
    ]
    for row in data["tables"]:
        verdict = "rebuilt" if row["derived"] else ("ok" if row["ok"] else "DIFFERS")
        lines.append(f"{row['table']:<16}{row['source']:>12,}{row['target']:>12,}  {verdict}")
    if report.runs_settled:
        lines.append(
            f"{report.runs_settled} run(s) were going on at the source; the copy records "
            "them as abandoned."
        )
    return lines


def copy(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL_OR_PATH",
            help="Where to copy: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB or a new .db file.",
            show_default=False,
        ),
    ],
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Overwrite a target that already holds a mirror."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the counts as JSON on stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Copy the mirror (TESTIO_SYNC_DATABASE_URL, else the SQLite file) to another store.

    The target gets this version's schema and every mirrored row in one
    transaction; the device rows and the search index are rebuilt there. The
    copy is checked table by table against the source's counts. The source is
    read as of one moment, so a sync may go on meanwhile. A target that holds a
    mirror is refused unless --replace.

    Example:
        $ testio-sync db copy --to postgresql://testio@db.example.com/testio
        $ TESTIO_SYNC_DATABASE_URL=postgresql://db/testio testio-sync db copy --to laptop.db
    """
    settings = settings_or_exit(create_home=False)
    with reported_errors():
        target = parse_store(to)
    require_mirror(settings)
    with reported_errors():
        open_store(settings)  # the source at this version's schema first
        report = copy_store(
            store_of(settings), target, replace=replace, progress=CopyProgress(quiet=quiet)
        )
    if json_output:
        typer.echo(render.to_json(report.to_dict()))
        return
    for line in copy_lines(report):
        typer.echo(line)
