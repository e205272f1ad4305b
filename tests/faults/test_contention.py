"""The CLI, the MCP tool and the periodic task asking for syncs at the same moment, 12 times."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from mcp import Client
from testsupport import TOKEN, make_settings

from testio_sync import tasks
from testio_sync.dates import utc_now
from testio_sync.mcp_server import build_server
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.models import SyncEvent, database
from testio_sync.sync import runs
from testio_sync.sync.types import SyncOptions

from .support import LOCKED, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("store_backend")]

ROUNDS = 12  # two turns of every pairing of CLI flags and who goes first
NO_WORKER_ROUNDS = {4, 9}  # the CLI and the MCP server then each sync in-process
# Rotated, with who goes first alternating, so some requests attach and some queue or wait.
CLI_FLAGS = (["--with-bugs"], [], ["--force"])


@pytest.fixture
def busy_server() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(scale="tiny", seed=5, token=TOKEN, latency_ms=60)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


@dataclass
class Reads:
    """MCP read calls of the reader thread: (tool, started epoch s, duration s, error text)."""

    samples: list[tuple[str, float, float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def read_until_stopped(server: Any, reads: Reads) -> None:
    """Alternate ``list_products`` and ``get_sync_status`` over one MCP session."""

    async def loop() -> None:
        async with Client(server) as client:
            for tool in itertools.cycle(("list_products", "get_sync_status")):
                if reads.stop.is_set():
                    return
                started, clock = time.time(), time.perf_counter()
                result = await client.call_tool(tool, {})
                took = time.perf_counter() - clock
                error = result.content[0].text if result.is_error else None
                reads.samples.append((tool, started, took, error))
                await asyncio.sleep(0.005)

    asyncio.run(loop())


def sync_data(server: Any, args: dict[str, Any]) -> dict[str, Any]:
    """One ``sync_data`` call over a fresh MCP session: its structured answer, or its error."""

    async def call() -> dict[str, Any]:
        async with Client(server) as client:
            result = await client.call_tool("sync_data", args)
        if result.is_error:
            return {"status": "tool error", "errors": [result.content[0].text]}
        return dict(result.structured_content or {})

    return asyncio.run(call())


def start_cli(settings: Settings, flags: list[str]) -> subprocess.Popen[str]:
    """``python -m testio_sync sync --json`` as a child process, as a user's shell runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "testio_sync", "sync", "--json", "-q", *flags],
        env={**os.environ, **settings.to_env()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_answer(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The child's JSON result on stdout, with its exit code and stderr."""
    stdout, stderr = proc.communicate(timeout=60)
    try:
        answer = json.loads(stdout)
    except ValueError:
        answer = {"status": "no JSON", "errors": [stdout]}
    return {**answer, "exit_code": proc.returncode, "stderr": stderr}


def mcp_args(n: int, products: list[int]) -> dict[str, Any]:
    """Round ``n``'s ``sync_data`` arguments: everything, two products, or forced."""
    return ({}, {"product_ids": products[:2]}, {"force": True})[(n + 1) % 3]


def newest_run() -> int:
    with database.connection_context():
        row = SyncEvent.select(SyncEvent.id).order_by(SyncEvent.id.desc()).first()
    return row.id if row else 0


def scheduler(settings: Settings, service: SyncService) -> dict[str, Any]:
    """The periodic task's check (made due by the round); waits on the run it enqueued, if any."""
    run_id = tasks.check_background_sync(settings, now=utc_now())
    if run_id is None:  # a run was already active, so there was nothing to enqueue
        return {"status": "skipped"}
    return service.handle(run_id).wait(60).to_dict()


def at_once(calls: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Start every call on its own thread behind one barrier; each answer, or what it raised."""
    answers: dict[str, dict[str, Any]] = {}
    barrier = threading.Barrier(len(calls))

    def run(name: str, call: Callable[[], dict[str, Any]]) -> None:
        barrier.wait()
        try:
            answers[name] = call()
        except Exception as exc:  # reported with every other answer by the assertions
            answers[name] = {"status": "raised", "errors": [f"{type(exc).__name__}: {exc}"]}

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return answers


def one_round(
    settings: Settings,
    flags: list[str],
    calls: dict[str, Callable[[], dict[str, Any]]],
    *,
    cli_first: bool,
) -> dict[str, dict[str, Any]]:
    """The CLI (a child process, ~0.2 s to start) and ``calls`` (threads) ask for syncs.

    ``cli_first``: ``calls`` fire the moment the CLI's request lands; otherwise all start
    at once, so the CLI's request arrives while theirs runs.
    """
    if not cli_first:
        return at_once({"cli": lambda: cli_answer(start_cli(settings, flags)), **calls})
    before = newest_run()
    cli = start_cli(settings, flags)
    answers: dict[str, dict[str, Any]] = {}
    try:
        wait_until(lambda: cli.poll() is not None or newest_run() > before, what="the CLI")
        answers = at_once(calls)
    finally:
        answers["cli"] = cli_answer(cli)
    return answers


@dataclass(frozen=True)
class Span:
    """One run as ``sync_events`` records it, in epoch seconds."""

    run_id: str
    in_process: bool
    enqueued: float
    started: float  # stamped once the run holds the sync lock
    finished: float


def recorded_spans() -> list[Span]:
    with database.connection_context():
        rows = list(SyncEvent.select().where(SyncEvent.started_at.is_null(False)))
    spans = []
    for row in rows:
        assert row.finished_at is not None, f"run {row.run_id} never finished ({row.status})"
        times = (row.enqueued_at, row.started_at, row.finished_at)
        spans.append(Span(row.run_id, row.in_process, *(t.timestamp() for t in times)))
    return sorted(spans, key=lambda span: span.started)


def test_syncs_asked_for_at_once_by_cli_mcp_and_scheduler_run_one_at_a_time_and_reads_stay_fast(
    busy_server, home, worker_pool, caplog
):
    """12 rounds: runs never overlap, no "database is locked" anywhere, every caller gets an
    answer, and every MCP read made while a run writes answers without an error."""
    caplog.set_level(logging.INFO)
    sim, url = busy_server
    settings = make_settings(
        home, url, lock_timeout_s=30.0, refresh_interval_s=0, mcp_sync_wait_s=60.0
    )
    # The worker's own periodic check stays off (interval 0); the rounds call it with ``due``.
    due = replace(settings, refresh_interval_s=3600)
    service = SyncService(settings)
    server = build_server(settings)
    workers = worker_pool(settings)
    worker = workers.start()
    products = sorted(sim.world.products)
    reads = Reads()
    reader = threading.Thread(target=read_until_stopped, args=(server, reads))
    reader.start()
    answers: list[tuple[int, str, dict[str, Any]]] = []
    try:
        for n in range(ROUNDS):
            sim.advance(hours=6)  # new tests and changed statuses: every round writes rows
            calls: dict[str, Callable[[], dict[str, Any]]] = {
                "mcp": lambda n=n: sync_data(server, mcp_args(n, products))
            }
            if n in NO_WORKER_ROUNDS:
                worker.terminate()
                worker.wait(10)
            else:  # the periodic task lives in the worker, so it only fires while one runs
                runs.set_last_sync_completed(utc_now() - timedelta(hours=2))
                calls["scheduler"] = lambda: scheduler(due, service)
            flags = CLI_FLAGS[n % len(CLI_FLAGS)]
            answered = one_round(settings, flags, calls, cli_first=n % 2 == 0)
            answers += [(n, name, answer) for name, answer in answered.items()]
            if n in NO_WORKER_ROUNDS:
                worker = workers.start()
    finally:
        reads.stop.set()
        reader.join(30)

    for n, name, answer in answers:
        assert answer.get("status") in ("succeeded", "skipped"), (n, name, answer)
        assert name != "cli" or answer["exit_code"] == 0, (n, answer)
    assert any(name == "scheduler" and "run_id" in answer for _, name, answer in answers)
    spans = recorded_spans()
    assert len(spans) >= ROUNDS
    for first, second in itertools.pairwise(spans):
        assert first.finished <= second.started, f"runs {first} and {second} overlap"
    waited = [b for a, b in itertools.pairwise(spans) if b.enqueued < a.finished]
    assert any(span.in_process for span in waited), "no in-process run ever waited for the lock"
    with database.connection_context():
        errors = [row.error or "" for row in SyncEvent.select()]
    logged = [json.dumps(answers), *errors, caplog.text, workers.log()]
    assert [text for text in logged if LOCKED in text] == []

    assert [s for s in reads.samples if s[3] is not None] == []
    during = [
        took
        for _, at, took, _ in reads.samples
        if any(span.started <= at <= span.finished for span in spans)
    ]
    assert len(during) >= 100, f"only {len(during)} reads overlapped a run"
    # How fast those reads are is measured by scripts/bench_reads.py, against its floor.


def test_a_run_waiting_for_the_sync_lock_is_not_recorded_as_started_meanwhile(busy_server, home):
    """Two in-process runs, the second queued behind the first's lock: their rows never overlap."""
    settings = make_settings(home, busy_server[1], lock_timeout_s=30.0)
    service = SyncService(settings)
    first = service.execute_sync(allow_in_process=True)
    first.start()
    wait_until(lambda: first.poll().progress.phase is not None, what="the first run's lock")
    second = service.execute_sync(options=SyncOptions(force_refresh=True), allow_in_process=True)
    assert not second.attached

    assert second.wait(60).succeeded and first.wait(60).succeeded
    spans = {span.run_id: span for span in recorded_spans()}
    assert spans[second.run_id].enqueued < spans[first.run_id].finished  # it did wait
    assert spans[first.run_id].finished <= spans[second.run_id].started
