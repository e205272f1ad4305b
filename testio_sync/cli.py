"""``testio-sync``: the command line over ``SyncService``.

Each command parses its flags, calls the service and prints: text on stdout,
``--json`` for scripts, progress and logs on stderr. A ``TestioSyncError``
becomes one ``Error: ...`` line on stderr and a documented exit code, never a
traceback. Commands register on ``app``; another module can add one with
``@app.command()``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from testio_sync import cli_render as render
from testio_sync.dates import parse_since, utc_now
from testio_sync.errors import (
    ConfigError,
    SyncLockedError,
    TestioSyncError,
    UsageError,
)
from testio_sync.settings import Settings, parse_product_ids
from testio_sync.store import queries
from testio_sync.sync.types import (
    DEFAULT_PHASES,
    SyncOptions,
    SyncPhase,
    SyncRequest,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)

if TYPE_CHECKING:
    from testio_sync.service import SyncHandle, SyncService

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130

# The runner records a lock wait that timed out as the run's only error, in the
# words of SyncLockedError: "... waiting for the sync lock ..." or "Another sync
# holds the lock ...".
_LOCK_WAIT = re.compile(r"sync lock|holds the lock", re.IGNORECASE)

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


# -- plumbing shared by the commands ----------------------------------------------


def load_settings() -> Settings:
    """Settings for this invocation; tests may replace this function."""
    return Settings.from_env()


def stdin_is_interactive() -> bool:
    """True when a person can answer a confirmation on stdin."""
    return sys.stdin.isatty()


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``Error: ...`` on stderr and exit with ``code``."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """Settings from the environment; a bad variable is a usage error (exit 2)."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the package's errors into ``Error: ...`` and an exit code, at the edge."""
    try:
        yield
    except UsageError as exc:
        fail(str(exc), EXIT_USAGE)
    except SyncLockedError as exc:
        fail(str(exc), EXIT_LOCKED)
    except TestioSyncError as exc:
        fail(str(exc), EXIT_FAILED)


@contextmanager
def logs_on_stderr(verbose: bool) -> Iterator[None]:
    """``--verbose`` shows the engine's log lines; otherwise the summary says it all."""
    logger = logging.getLogger("testio_sync")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.setLevel(logging.INFO if verbose else logging.CRITICAL)
    previous = logger.level
    if verbose:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def open_service(settings: Settings) -> SyncService:
    """The service for ``settings``.

    Imported here, not at module level: importing the task queue creates its
    file in the data directory, which ``--help`` and ``simulate`` must not do.
    """
    from testio_sync.service import SyncService

    return SyncService(settings)


def confirm_or_exit(question: str, *, yes: bool, what: str) -> None:
    """Ask for ``yes`` before a destructive step; refuse when nobody can answer."""
    if yes:
        return
    if not stdin_is_interactive():
        fail(
            f"{what} replaces the local data: pass --yes to confirm "
            "(stdin is not a terminal to ask on). Nothing was changed.",
            EXIT_USAGE,
        )
    answer = typer.prompt(
        f"{question} Type 'yes' to go on", default="", show_default=False, err=True
    )
    if answer.strip().lower() != "yes":
        typer.echo("Cancelled: nothing was changed.", err=True)
        raise typer.Exit(EXIT_FAILED)


def lock_wait_timed_out(result: SyncResult) -> bool:
    """True when the run failed only because another sync kept the lock."""
    return (
        result.status == SyncStatus.FAILED
        and not result.phases_completed
        and any(_LOCK_WAIT.search(error) for error in result.errors)
    )


def exit_code_for(result: SyncResult) -> int:
    if result.status == SyncStatus.SUCCEEDED:
        return EXIT_OK
    if result.status == SyncStatus.PARTIAL:
        return EXIT_PARTIAL
    if lock_wait_timed_out(result):
        return EXIT_LOCKED
    return EXIT_FAILED


# -- sync -------------------------------------------------------------------------


def parse_sync_flags(
    *,
    since: str | None,
    product_ids: list[str] | None,
    force: bool,
    incremental_only: bool,
    nuke: bool,
    with_bugs: bool,
    verbose: bool,
    quiet: bool,
) -> tuple[tuple[SyncPhase, ...], SyncScope, SyncOptions]:
    """Check the flags before anything is opened or enqueued.

    Raises:
        UsageError: contradictory flags or bad values.
    """
    clashes = [
        (force and nuke, "--force and --nuke", "--nuke already resyncs everything"),
        (incremental_only and nuke, "--incremental-only and --nuke", "--nuke resyncs everything"),
        (force and incremental_only, "--force and --incremental-only", "pick one"),
        (verbose and quiet, "--verbose and --quiet", "pick one"),
        (
            nuke and since is not None,
            "--nuke and --since",
            "--nuke deletes every test and --since would fetch back only the newer ones",
        ),
    ]
    for clash, flags, why in clashes:
        if clash:
            raise UsageError(f"{flags} contradict each other: {why}.")
    ids: tuple[int, ...] | None = None
    if product_ids:
        try:
            ids = parse_product_ids(",".join(product_ids), source="--product-ids")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if not ids:
            raise UsageError("--product-ids: give at least one product id")
    since_date = parse_since(since) if since is not None else None
    phases = (*DEFAULT_PHASES, SyncPhase.BUGS) if with_bugs else DEFAULT_PHASES
    options = SyncOptions(force_refresh=force, incremental_only=incremental_only, nuke=nuke)
    return phases, SyncScope(product_ids=ids, since_date=since_date), options


class Output:
    """Where each kind of text goes: results on stdout, notes on stdout or (``--json``) stderr."""

    def __init__(self, *, json_output: bool, quiet: bool, verbose: bool) -> None:
        self.json_output = json_output
        self.quiet = quiet
        self.verbose = verbose

    def note(self, text: str) -> None:
        """A remark about the run (attached, in process): not part of a JSON answer."""
        if not self.quiet:
            typer.echo(text, err=self.json_output)

    def info(self, lines: list[str]) -> None:
        """Text shown before work starts (previews): stderr under ``--json``."""
        for line in lines:
            typer.echo(line, err=self.json_output)

    def result(self, result: SyncResult) -> None:
        if self.json_output:
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        lines = (
            render.quiet_lines(result)
            if self.quiet
            else render.summary_lines(result, verbose=self.verbose)
        )
        for line in lines:
            typer.echo(line)


def show_dry_run(
    service: SyncService, request: SyncRequest, out: Output, *, nuke_preview: bool
) -> None:
    """Print the plan (and the nuke preview); nothing is written, nothing enqueued."""
    from testio_sync.cli_plan import build_plan

    plan = build_plan(request, service.settings, now=utc_now())
    preview = service.nuke_preview(request.scope.product_ids) if nuke_preview else None
    if out.json_output:
        if preview is not None:
            plan["nuke_preview"] = preview
        typer.echo(render.to_json(plan))
        return
    if preview is not None:
        out.info(render.nuke_preview_lines(preview))
    for line in render.plan_lines(plan, now=utc_now()):
        typer.echo(line)


def enqueue_only(
    service: SyncService,
    parts: tuple[tuple[SyncPhase, ...], SyncScope, SyncOptions],
    out: Output,
) -> None:
    """``--no-wait``: hand the run to the worker and say how to follow it."""
    if not service.worker_alive():
        fail(
            "no worker is running, and --no-wait needs one: start it with "
            "`testio-sync worker` (or drop --no-wait to sync in this process)."
        )
    phases, scope, options = parts
    handle = service.execute_sync(phases, scope, options, trigger=SyncTrigger.CLI)
    if out.json_output:
        view = handle.poll()
        payload = {"run_id": handle.run_id, "attached": handle.attached, "status": view.status}
        typer.echo(json.dumps(payload, indent=2))
        return
    if handle.attached:
        typer.echo(f"Attached to sync run {handle.run_id} already in progress.")
    else:
        typer.echo(f"Queued sync run {handle.run_id} for the worker.")
    typer.echo("Follow it with `testio-sync status`.")


def stop_in_process(handle: SyncHandle) -> SyncResult:
    """Stop an in-process run between pages and return what it recorded."""
    typer.echo(f"Stopping sync run {handle.run_id} after the current request...", err=True)
    handle.stop()
    view = handle.poll()
    if view.result is None:
        fail(f"run {handle.run_id} did not stop in time; `testio-sync status` shows it.")
    return view.result


def wait_for(handle: SyncHandle, out: Output, *, timeout: float | None) -> tuple[SyncResult, int]:
    """Wait with progress on stderr; Ctrl-C and ``--timeout`` end the wait, not a worker run."""
    from testio_sync.service import SyncWaitTimeout

    reporter = render.make_progress(sys.stderr, quiet=out.quiet)
    follow = "Follow it with `testio-sync status`."
    try:
        try:
            result = handle.wait(timeout, on_progress=reporter)
        finally:
            reporter.close()
        return result, exit_code_for(result)
    except KeyboardInterrupt:
        if not handle.in_process:
            typer.echo(
                f"Stopped waiting; run {handle.run_id} goes on in the worker. {follow}", err=True
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        return stop_in_process(handle), EXIT_INTERRUPTED
    except SyncWaitTimeout:
        if not handle.in_process:
            fail(f"stopped waiting after {timeout:g}s; run {handle.run_id} goes on. {follow}")
        typer.echo(f"The sync did not finish within {timeout:g}s.", err=True)
        return stop_in_process(handle), EXIT_FAILED


def nuke_aftermath(result: SyncResult, out: Output) -> None:
    """After a failed nuke, say where the old data is and how to put it back."""
    if result.status not in (SyncStatus.FAILED, SyncStatus.ABANDONED):
        return
    if result.backup_path is None:
        out.info(["Nothing was deleted."])
    elif not any("testio-sync restore" in error for error in result.errors):
        out.info(
            [
                f"The previous data is in {result.backup_path}; put it back with "
                f"`testio-sync restore {result.backup_path}`."
            ]
        )


@app.command()
def sync(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Only tests that ended on or after DATE: 2026-01-31, '30 days ago', 30d, 2w.",
        ),
    ] = None,
    product_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--product-ids",
            "-p",
            metavar="ID[,ID...]",
            help="Only these products (comma list, or repeat). Default: TESTIO_PRODUCT_IDS, "
            "else all.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Walk every test page and refetch features again.")
    ] = False,
    incremental_only: Annotated[
        bool,
        typer.Option("--incremental-only", help="Only discover new tests (no products, features)."),
    ] = False,
    nuke: Annotated[
        bool,
        typer.Option(
            "--nuke", help="Back up, delete the local data (of --product-ids) and sync it again."
        ),
    ] = False,
    with_bugs: Annotated[
        bool, typer.Option("--with-bugs", help="Also refresh the bugs of the tests in scope.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --nuke.")] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Hand the run to the worker, print its id and return."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show scope and estimated API requests; change nothing."),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log on stderr; per-product counts.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress; only errors and the outcome.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0,
            help="Stop waiting after SECONDS (a worker's run goes on; a run here stops).",
        ),
    ] = None,
) -> None:
    """Sync the local mirror with the TestIO API (products, features, new tests).

    The run goes to the worker when one is running (`testio-sync worker`), or
    runs in this process otherwise; a sync already running that covers this one
    is joined instead of starting another. Progress goes to stderr, the summary
    to stdout.

    Example:
        $ testio-sync sync --product-ids 598,599 --since 30d --with-bugs
    """
    out = Output(json_output=json_output, quiet=quiet, verbose=verbose)
    with reported_errors():
        parts = parse_sync_flags(
            since=since,
            product_ids=product_ids,
            force=force,
            incremental_only=incremental_only,
            nuke=nuke,
            with_bugs=with_bugs,
            verbose=verbose,
            quiet=quiet,
        )
    settings = settings_or_exit()
    with reported_errors(), logs_on_stderr(verbose):
        service = open_service(settings)
        request = service.build_request(*parts, trigger=SyncTrigger.CLI)
        if dry_run:
            show_dry_run(service, request, out, nuke_preview=nuke)
            return
        if nuke:
            out.info(render.nuke_preview_lines(service.nuke_preview(request.scope.product_ids)))
            confirm_or_exit("This deletes the data above after the backup.", yes=yes, what="--nuke")
        if no_wait:
            enqueue_only(service, parts, out)
            return
        if not service.worker_alive():
            try:
                settings.require_token()
            except ConfigError as exc:
                fail(str(exc), EXIT_USAGE)
        handle = service.execute_sync(*parts, trigger=SyncTrigger.CLI, allow_in_process=True)
        if handle.attached:
            out.note(f"Attached to sync run {handle.run_id} already in progress")
        elif handle.in_process:
            out.note(
                "No worker is running: running the sync in this process "
                "(start one with `testio-sync worker`)"
            )
        result, code = wait_for(handle, out, timeout=timeout)
        out.result(result)
        if nuke:
            nuke_aftermath(result, out)
    raise typer.Exit(code)


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
    `huey_consumer tasks.huey -w 1 -k thread -d 0.05 -m 0.5 -f`
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


@app.command()
def serve(
    transport: Annotated[
        str, typer.Option(help="stdio (for an MCP client) or http (streamable HTTP at /mcp).")
    ] = "stdio",
    host: Annotated[str, typer.Option(help="Address for --transport http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --transport http.")] = 8080,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not start a worker alongside the server.")
    ] = False,
) -> None:
    """Run the MCP server over the local mirror (it starts a worker unless --no-worker).

    Example:
        $ testio-sync serve --transport http --port 8080
    """
    if transport not in ("stdio", "http"):
        fail(f"--transport must be stdio or http, not {transport!r}.", EXIT_USAGE)
    settings = settings_or_exit()
    with reported_errors():
        try:
            from testio_sync.mcp_server import run_server
        except ImportError as exc:
            fail(f"the MCP server cannot be loaded: {exc}")
        run_server(settings, transport=transport, host=host, port=port, start_worker=not no_worker)


def main() -> Any:
    """Console-script entry point (``testio-sync``)."""
    return app(prog_name="testio-sync")
