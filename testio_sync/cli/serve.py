"""``testio-sync worker`` and ``testio-sync serve``: the long-running processes."""

from __future__ import annotations

import getpass
import logging
import sys
from enum import StrEnum
from typing import Annotated

import typer

from testio_sync.cli.support import EXIT_USAGE, fail, reported_errors, settings_or_exit


def worker() -> None:
    """Run the sync worker in the foreground until Ctrl-C.

    It runs queued syncs one at a time and starts the background sync when it is
    due (TESTIO_REFRESH_INTERVAL_SECONDS). On a shared queue (TESTIO_SYNC_QUEUE_URL)
    start as many as you like: they take turns, one sync at a time. The same as
    `huey_consumer testio_sync.tasks.huey -w 1 -k thread -d 0.05 -m 0.1 -f`
    with the TESTIO_* settings in its environment.

    Example:
        $ testio-sync worker
    """
    settings = settings_or_exit()
    with reported_errors():
        settings.ensure_home()
        from testio_sync.tasks.liveness import worker_alive, worker_pid
        from testio_sync.tasks.queue import configure

        configure(settings)  # a queue server that cannot be reached: one line, exit 2
        if worker_alive(settings.worker_lock_path) and settings.queue_url is None:
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
        from testio_sync.tasks.consumer import run_worker

        try:
            run_worker(settings)
        except KeyboardInterrupt:
            typer.echo("Worker stopped.", err=True)


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"


def serve(
    transport: Annotated[
        Transport, typer.Option(help="stdio (for an MCP client) or http (streamable HTTP at /mcp).")
    ] = Transport.STDIO,
    host: Annotated[
        str,
        typer.Option(
            help="Address for --transport http; any but 127.0.0.1, localhost or ::1 "
            "needs TESTIO_SYNC_SERVER_TOKENS or TESTIO_SYNC_SERVER_TOKENS_FILE."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --transport http.")] = 8080,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not start a worker alongside the server.")
    ] = False,
    hash_token: Annotated[
        bool,
        typer.Option(
            "--hash-token",
            help="Read a token on stdin, print its TESTIO_SYNC_SERVER_TOKENS_FILE line, exit.",
        ),
    ] = False,
) -> None:
    """Run the MCP server over the local mirror (it starts a worker unless --no-worker).

    On stdio nothing but the protocol goes to stdout; logs go to stderr. Over
    HTTP, every request must carry `Authorization: Bearer <token>` when tokens
    are set, and always on an address other than 127.0.0.1, localhost or ::1.

    Example:
        $ testio-sync serve --transport http --port 8080
        $ echo "$TOKEN" | testio-sync serve --hash-token >> tokens.txt
        $ export TESTIO_SYNC_SERVER_TOKENS_FILE=tokens.txt
        $ testio-sync serve --transport http --host 0.0.0.0 --no-worker
    """
    if hash_token:
        print_token_line()
        return
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


def print_token_line() -> None:
    """``serve --hash-token``: the token from stdin (never argv, which ``ps`` shows)."""
    from testio_sync.errors import ConfigError
    from testio_sync.mcp_server.http_auth import hash_token
    from testio_sync.settings import check_server_token

    if sys.stdin.isatty():
        token = getpass.getpass("Token (not echoed): ", stream=sys.stderr)
    else:
        token = sys.stdin.readline()
    if not token.strip():
        fail('no token on stdin; e.g. echo "$TOKEN" | testio-sync serve --hash-token', EXIT_USAGE)
    try:
        secret = check_server_token(token.strip(), "the token on stdin")
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    typer.echo(hash_token(secret.reveal()))
