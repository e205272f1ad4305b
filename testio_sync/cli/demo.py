"""``testio-sync demo``: the whole system on the built-in simulator, in under a minute.

It starts a seeded simulator and a real worker, runs a full sync through the
queue, moves the simulated clock a day on and syncs incrementally, then prints
a quality report and the status. Everything runs in a demo directory of its
own, never the user's data directory; what it started, it stops.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TextIO

import typer

from testio_sync.cli.render import make_progress, plural, status_lines, summary_lines
from testio_sync.cli.support import fail, reported_errors
from testio_sync.errors import UsageError
from testio_sync.insights.filters import ReportFilters
from testio_sync.insights.report_text import report_lines
from testio_sync.settings import Secret, Settings
from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncResult, SyncStatus

DEMO_DIR = Path(tempfile.gettempdir()) / "testio-sync-demo"

DEMO_TOKEN = "demo-token"
MARKER = ".testio-sync-demo"  # marks a folder the demo made, and may empty again


def prepare_demo_dir(directory: Path) -> None:
    """Empty a former demo folder, or create a new one; never touch anything else.

    Raises:
        UsageError: ``directory`` is a file, or a folder with files the demo did not make.
    """
    if directory.exists():
        if not directory.is_dir():
            raise UsageError(f"--dir {directory} is a file, not a folder.")
        # The default folder is the demo's own (older demos left it without a marker).
        former = (directory / MARKER).is_file() or directory.resolve() == DEMO_DIR.resolve()
        if any(directory.iterdir()) and not former:
            raise UsageError(
                f"--dir {directory} holds files the demo did not make; "
                "give an empty or new folder (the demo empties its folder first)."
            )
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True)
    (directory / MARKER).write_text("Made by `testio-sync demo`, which may empty it again.\n")


def run_demo(
    directory: Path,
    *,
    out: TextIO,
    err: TextIO,
    scale: str = "seed",
    latency_ms: float = 20.0,
    quiet: bool = False,
) -> int:
    """Run the demo in ``directory`` (a former demo folder is emptied first); returns the exit code.

    Raises:
        UsageError: ``directory`` is not empty and not a former demo folder.
    """
    # Imported here: the simulator and the report client are heavy, and only the demo runs them.
    from testio_sync.insights.report import quality_report
    from testio_sync.service import SyncService
    from testio_sync.simulator import Simulator
    from testio_sync.tasks.consumer import spawn_worker

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    prepare_demo_dir(directory)
    sim = Simulator(scale=scale, seed=1, token=DEMO_TOKEN, latency_ms=latency_ms)
    with sim.serve(host="127.0.0.1", port=0) as server:
        settings = Settings(
            home=directory,
            api_base_url=server.base_url,
            api_token=Secret(DEMO_TOKEN),
            refresh_interval_s=0,  # the demo drives every sync itself
        )
        say(f"Demo data directory: {directory}")
        say(f"Simulated TestIO API: {server.base_url} ({scale} scale, {latency_ms:.0f} ms)")
        service = SyncService(settings)
        worker = spawn_worker(settings)
        say(f"Worker started (PID {worker.pid})")
        try:
            run = _runner(service, err=err, quiet=quiet, say=say)
            say("\n1. Full sync with bugs, through the queue")
            first = run([*DEFAULT_PHASES, SyncPhase.BUGS])
            changes = sim.advance(hours=24)
            say(
                "\n2. A day passes upstream. New: "
                f"{plural(len(changes.get('new_tests', [])), 'tests')}, "
                f"{plural(changes.get('new_bugs', 0), 'bugs')}; deleted: "
                f"{plural(len(changes.get('deleted_tests', [])), 'tests')}"
            )
            say("   Incremental sync")
            second = run([*DEFAULT_PHASES, SyncPhase.BUGS])
            say("\n3. Product quality report (from the local mirror)")
            filters = ReportFilters.parse(product_ids=sorted(sim.world.products))
            report = asyncio.run(quality_report(filters, settings))
            for line in report_lines(report):
                say("   " + line if line else "")
            say("\n4. Status")
            for line in status_lines(service.status()):
                say("   " + line)
        finally:
            worker.terminate()
            worker.wait(15)
    say("\nWorker and simulator stopped.")
    say(f"Look around: TESTIO_SYNC_HOME={directory} testio-sync status")
    ok = all(r.status == SyncStatus.SUCCEEDED for r in (first, second))
    return 0 if ok else 1


def _runner(
    service: object, *, err: TextIO, quiet: bool, say: Callable[[str], None]
) -> Callable[[list[SyncPhase]], SyncResult]:
    def run(phases: list[SyncPhase]) -> SyncResult:
        progress = make_progress(err, quiet=quiet)
        try:
            result = service.execute_sync(phases=phases).wait(300, on_progress=progress)  # type: ignore[attr-defined]
        finally:
            progress.close()
        for line in summary_lines(result):
            say("   " + line)
        return result

    return run


def demo(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="Where the demo keeps its data: a new or empty folder, or a former demo's.",
        ),
    ] = DEMO_DIR,
    scale: Annotated[str, typer.Option(help="Simulator data size: tiny, seed or large.")] = "seed",
    latency_ms: Annotated[float, typer.Option(help="Simulated API latency.")] = 20.0,
) -> None:
    """Run the whole system on the built-in simulator: sync, a day later, report, status.

    Starts the simulated API and a worker, syncs through the queue, lets a day
    pass upstream and syncs again, prints the quality report and the status,
    then stops what it started. Your real data directory is never touched.

    Example:
        $ testio-sync demo
    """
    if scale not in ("tiny", "seed", "large"):
        fail(f"--scale must be tiny, seed or large, not {scale!r}", 2)
    with reported_errors():
        code = run_demo(
            directory, out=sys.stdout, err=sys.stderr, scale=scale, latency_ms=latency_ms
        )
    raise typer.Exit(code)
