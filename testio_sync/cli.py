"""``testio-sync``: the command line over ``SyncService``.

Each command parses its flags, calls the service and prints: text on stdout,
``--json`` for scripts, progress and logs on stderr. A ``TestioSyncError``
becomes one ``Error: ...`` line on stderr and a documented exit code, never a
traceback. Commands register on ``app`` (``sync`` lives in ``cli_sync``);
another module adds one with ``app.command()(function)``.
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from testio_sync import cli_render as render
from testio_sync.cli_report import demo, report
from testio_sync.cli_support import (
    confirm_or_exit,
    fail,
    open_service,
    reported_errors,
    settings_or_exit,
)
from testio_sync.cli_sync import sync
from testio_sync.dates import utc_now
from testio_sync.store import queries

APP_HELP = """Keep a local SQLite mirror of the TestIO Customer API fresh.

Settings come from the environment: TESTIO_CUSTOMER_API_TOKEN,
TESTIO_CUSTOMER_API_BASE_URL, TESTIO_SYNC_HOME (default ~/.testio-sync),
TESTIO_PRODUCT_IDS (default product filter) and the other TESTIO_* variables.

Exit codes:
0    success
1    failed: API refused or unreachable, run died, or --timeout ran out
2    usage error: bad flags or settings; nothing was changed
3    partial: the sync finished with errors
4    timed out waiting for the sync lock another sync holds
130  interrupted (Ctrl-C)

Example:
    $ testio-sync sync --since 30d && testio-sync status
"""

app = typer.Typer(
    name="testio-sync",
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(sync)
app.command()(report)
app.command()(demo)


# -- status and restore -----------------------------------------------------------


@app.command()
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


@app.command()
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


# -- long-running processes -------------------------------------------------------


@app.command()
def worker() -> None:
    """Run the sync worker in the foreground until Ctrl-C.

    It runs queued syncs one at a time and starts the background sync when it is
    due (TESTIO_REFRESH_INTERVAL_SECONDS). The same as
    `huey_consumer tasks.huey -w 1 -k thread -d 0.05 -m 0.1 -f`
    with the TESTIO_* settings in its environment.

    Example:
        $ testio-sync worker
    """
    settings = settings_or_exit()
    with reported_errors():
        settings.ensure_home()
        from tasks.liveness import worker_alive, worker_pid

        if worker_alive(settings.worker_lock_path):
            pid = worker_pid(settings.worker_lock_path)
            fail(f"a worker already runs for {settings.home}" + (f" (PID {pid})." if pid else "."))
        if not settings.api_token:
            typer.echo("Warning: TESTIO_CUSTOMER_API_TOKEN is not set; syncs will fail.", err=True)
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        typer.echo(f"Worker running for {settings.home}; Ctrl-C stops it.", err=True)
        from tasks.consumer import run_worker

        try:
            run_worker(settings)
        except KeyboardInterrupt:
            typer.echo("Worker stopped.", err=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def simulate(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8765,
    scale: Annotated[str, typer.Option(help="Data size: tiny, seed or large.")] = "seed",
    seed: Annotated[int, typer.Option(help="Random seed of the generated data.")] = 1,
    token: Annotated[str, typer.Option(help="The API token it accepts.")] = "demo-token",
    latency_ms: Annotated[float, typer.Option(help="Delay added to every answer.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of answers that are 502/503/504.")] = 0.0,
    rate_limit: Annotated[float, typer.Option(help="Requests per second before 429s.")] = 0.0,
    broken_tests: Annotated[
        str | None, typer.Option(metavar="N|ID,ID", help="Tests whose pages answer 500.")
    ] = None,
    token_revoked: Annotated[
        bool, typer.Option("--token-revoked", help="Answer 401 to every request.")
    ] = False,
) -> None:
    """Serve a seeded, simulated TestIO Customer API to sync against.

    Prints `Simulator listening on <base url>` once it accepts connections.
    Other fault flags of `python -m testio_sync.simulator --help` pass through.

    Example:
        $ testio-sync simulate --port 8765 --scale seed --token demo-token
    """
    from testio_sync.simulator.cli import main as simulator_main

    argv = [
        f"--host={host}",
        f"--port={port}",
        f"--scale={scale}",
        f"--seed={seed}",
        f"--token={token}",
        f"--latency-ms={latency_ms}",
        f"--error-rate={error_rate}",
        f"--rate-limit={rate_limit}",
    ]
    if broken_tests is not None:
        argv.append(f"--broken-tests={broken_tests}")
    if token_revoked:
        argv.append("--token-revoked")
    raise typer.Exit(simulator_main([*argv, *ctx.args]))


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"


@app.command()
def serve(
    transport: Annotated[
        Transport, typer.Option(help="stdio (for an MCP client) or http (streamable HTTP at /mcp).")
    ] = Transport.STDIO,
    host: Annotated[str, typer.Option(help="Address for --transport http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --transport http.")] = 8080,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not start a worker alongside the server.")
    ] = False,
) -> None:
    """Run the MCP server over the local mirror (it starts a worker unless --no-worker).

    On stdio nothing but the protocol goes to stdout; logs go to stderr.

    Example:
        $ testio-sync serve --transport http --port 8080
    """
    settings = settings_or_exit()
    with reported_errors():
        # Imported here: the MCP SDK is heavy, and only this command needs it.
        from testio_sync.mcp_server import run_server

        run_server(
            settings,
            transport="http" if transport is Transport.HTTP else "stdio",
            host=host,
            port=port,
            start_worker=not no_worker,
        )


def main() -> Any:
    """Console-script entry point (``testio-sync``)."""
    return app(prog_name="testio-sync")
