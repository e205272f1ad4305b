"""``testio-sync sync``: flags -> ``SyncService.execute_sync`` -> progress -> summary.

Validation happens before anything is opened or enqueued, so a bad flag
changes nothing. The run goes to the worker when one is alive, else runs in
this process; either way the CLI waits on the run's ``sync_events`` row.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from testio_sync.cli import render
from testio_sync.cli.plan import build_plan, plan_lines
from testio_sync.cli.support import (
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    confirm_or_exit,
    exit_code_for,
    fail,
    logs_on_stderr,
    open_service,
    reported_errors,
    settings_or_exit,
)
from testio_sync.dates import parse_since, utc_now
from testio_sync.errors import ConfigError, UsageError
from testio_sync.settings import Settings, parse_product_ids
from testio_sync.store.backups import damage_of
from testio_sync.sync.restore import set_aside_damaged
from testio_sync.sync.types import (
    SyncOptions,
    SyncPhase,
    SyncRequest,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
    sync_phases,
)

if TYPE_CHECKING:
    from testio_sync.service import SyncHandle, SyncService


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
    phases = sync_phases(with_bugs=with_bugs)
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
    plan = build_plan(request, service.settings, now=utc_now())
    preview = service.nuke_preview(request.scope.product_ids) if nuke_preview else None
    if out.json_output:
        if preview is not None:
            plan["nuke_preview"] = preview
        typer.echo(render.to_json(plan))
        return
    if preview is not None:
        out.info(render.nuke_preview_lines(preview))
    for line in plan_lines(plan, now=utc_now()):
        typer.echo(line)


def enqueue_only(
    service: SyncService,
    parts: tuple[tuple[SyncPhase, ...], SyncScope, SyncOptions],
    out: Output,
) -> None:
    """``--no-wait``: hand the run to the worker and say how to follow it."""
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
    typer.echo(f"Follow it with `testio-sync status {handle.run_id}`.")


def stop_in_process(handle: SyncHandle) -> SyncResult:
    """Stop an in-process run between pages and return what it recorded."""
    typer.echo(f"Stopping sync run {handle.run_id} after the current request...", err=True)
    handle.stop()
    view = handle.poll()
    if view.result is None:
        fail(
            f"run {handle.run_id} did not stop in time; "
            f"`testio-sync status {handle.run_id}` shows it."
        )
    return view.result


def wait_for(handle: SyncHandle, out: Output, *, timeout: float | None) -> tuple[SyncResult, int]:
    """Wait with progress on stderr; Ctrl-C and ``--timeout`` end the wait, not a worker run."""
    from testio_sync.service import SyncWaitTimeout  # see open_service: imports the queue

    reporter = render.make_progress(sys.stderr, quiet=out.quiet)
    follow = f"Follow it with `testio-sync status {handle.run_id}`."
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
            fail(
                f"stopped waiting after {timeout:g}s; run {handle.run_id} goes on. {follow}",
                EXIT_TIMEOUT,
            )
        typer.echo(f"The sync did not finish within {timeout:g}s.", err=True)
        return stop_in_process(handle), EXIT_TIMEOUT


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


def set_aside_if_damaged(settings: Settings, out: Output, *, yes: bool) -> bool:
    """``--nuke`` on a damaged database: move it aside (kept) and start afresh.

    Returns whether the nuke is confirmed already (it was, to set the file aside).
    """
    if settings.database_url is not None:  # PostgreSQL checks its own pages
        return yes
    damage = damage_of(settings.db_path)
    if damage is None:
        return yes
    out.info(
        [
            f"The database {settings.db_path} is damaged ({damage}).",
            "--nuke moves it aside (kept) and syncs the scope again into a new one; "
            "`testio-sync restore` would put a backup back instead.",
        ]
    )
    confirm_or_exit("This sets the damaged database aside.", yes=yes, what="--nuke")
    kept = set_aside_damaged(settings)
    if kept is not None:
        out.info([f"The damaged database is kept as {kept}"])
    return True


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
        bool,
        typer.Option(
            "--force",
            help="Walk every test page and refetch features again; also confirms a removal "
            "of more than TESTIO_MAX_REMOVAL_SHARE of the stored data.",
        ),
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
            help="Stop waiting after SECONDS, exit 5 (a worker's run goes on; a run here stops).",
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
        if nuke and not dry_run:
            yes = set_aside_if_damaged(settings, out, yes=yes)
        service = open_service(settings)
        request = service.build_request(*parts, trigger=SyncTrigger.CLI)
        if dry_run:
            show_dry_run(service, request, out, nuke_preview=nuke)
            return
        worker_alive = service.worker_alive()
        if no_wait and not worker_alive:
            fail(
                "no worker is running, and --no-wait needs one: start it with "
                "`testio-sync worker` (or drop --no-wait to sync in this process)."
            )
        if not worker_alive:  # the run will happen here, with this process's token
            try:
                settings.require_token()
            except ConfigError as exc:
                fail(str(exc), EXIT_USAGE)
        if nuke:
            preview = service.nuke_preview(request.scope.product_ids)
            out.info(render.nuke_preview_lines(preview))
            confirm_or_exit("This deletes the data above after the backup.", yes=yes, what="--nuke")
            # The run writes the very file the preview named.
            options = replace(parts[2], backup_path=preview["backup_path"])
            parts = (parts[0], parts[1], options)
        if no_wait:
            enqueue_only(service, parts, out)
            return
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
