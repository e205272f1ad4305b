"""The CLI, the MCP tool and the periodic task asking for syncs at the same moment, 20 times."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, timedelta
from typing import Any

import pytest
from mcp import Client
from testsupport import TOKEN, make_settings
from typer.testing import CliRunner

import tasks
from testio_sync import cli
from testio_sync.dates import utc_now
from testio_sync.mcp_server import build_server
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.models import SyncEvent, database

from .support import LOCKED, percentile

pytestmark = pytest.mark.faults

ROUNDS = 20
NO_WORKER_ROUNDS = {4, 9, 14, 19}  # the CLI and MCP then run their syncs in this process
READ_LIMIT_S = 0.100
CLI_ARGS = (["--with-bugs"], [], ["--force"])  # rotated: some runs attach, some queue


@pytest.fixture
def busy_server() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(scale="tiny", seed=5, token=TOKEN, latency_ms=10)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


@dataclass
class Reads:
    """MCP read calls made by a reader thread: (tool, started epoch s, duration s, error)."""

    samples: list[tuple[str, float, float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def read_while_syncing(server: Any, reads: Reads) -> None:
    """Alternate ``list_products`` and ``get_sync_status`` over one MCP session until stopped."""

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
    """One ``sync_data`` call over a fresh MCP session; its structured answer or error text."""

    async def call() -> dict[str, Any]:
        async with Client(server) as client:
            result = await client.call_tool("sync_data", args)
        if result.is_error:
            return {"status": "tool error", "errors": [result.content[0].text]}
        return dict(result.structured_content or {})

    return asyncio.run(call())


def run_cli(settings: Settings, extra: list[str]) -> dict[str, Any]:
    """``testio-sync sync --json`` through typer's runner; its result with the exit code."""
    outcome = CliRunner().invoke(cli.app, ["sync", "--json", "-q", *extra], env=settings.to_env())
    try:
        answer = json.loads(outcome.stdout)
    except ValueError:
        answer = {"status": "no JSON", "errors": [outcome.stdout]}
    return {**answer, "exit_code": outcome.exit_code, "stderr": outcome.stderr}


def scheduler(settings: Settings, service: SyncService) -> dict[str, Any]:
    """The periodic task's check, made due; waits on the run it enqueued, if any."""
    run_id = tasks.check_background_sync(settings, now=utc_now() + timedelta(hours=2))
    if run_id is None:  # a run was active already: nothing to enqueue, by design
        return {"status": "skipped"}
    return service.handle(run_id).wait(60).to_dict()


def at_once(calls: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Start every call on its own thread behind one barrier; every answer, or the error."""
    answers: dict[str, dict[str, Any]] = {}
    barrier = threading.Barrier(len(calls))

    def run(name: str, call: Callable[[], dict[str, Any]]) -> None:
        barrier.wait()
        try:
            answers[name] = call()
        except Exception as exc:  # the round's assertions report it with the others
            answers[name] = {"status": "raised", "errors": [f"{type(exc).__name__}: {exc}"]}

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    return answers


def run_intervals() -> list[tuple[str, float, float]]:
    with database.connection_context():
        rows = list(SyncEvent.select().where(SyncEvent.started_at.is_null(False)))
    return sorted(
        (r.run_id, r.started_at.replace(tzinfo=UTC).timestamp(), finished(r)) for r in rows
    )


def finished(row: SyncEvent) -> float:
    assert row.finished_at is not None, f"run {row.run_id} never finished ({row.status})"
    return row.finished_at.replace(tzinfo=UTC).timestamp()


def test_syncs_asked_for_at_once_by_cli_mcp_and_scheduler_run_one_at_a_time_and_reads_stay_fast(
    busy_server, home, worker_pool, caplog
):
    """20 rounds: no overlapping runs, no "database is locked", an answer for every caller.

    MCP reads made while a run is writing each take under 100 ms.
    """
    caplog.set_level(logging.INFO)
    sim, url = busy_server
    settings = make_settings(
        home, url, lock_timeout_s=30.0, refresh_interval_s=0, mcp_sync_wait_s=60.0
    )
    due = replace(settings, refresh_interval_s=3600)
    service = SyncService(settings)
    server = build_server(settings)
    workers = worker_pool(settings)
    worker = workers.start()
    products = sorted(sim.world.products)
    reads = Reads()
    reader = threading.Thread(target=read_while_syncing, args=(server, reads))
    reader.start()
    answers: list[tuple[int, str, dict[str, Any]]] = []
    try:
        for round_no in range(ROUNDS):
            sim.advance(hours=6)  # new tests and status changes: every round has rows to write
            calls: dict[str, Callable[[], dict[str, Any]]] = {
                "cli": lambda n=round_no: run_cli(settings, CLI_ARGS[n % len(CLI_ARGS)]),
                "mcp": lambda n=round_no: sync_data(
                    server, {"product_ids": products[:2]} if n % 2 else {}
                ),
            }
            if round_no in NO_WORKER_ROUNDS:
                worker.terminate()
                worker.wait(10)
            else:  # the periodic task runs inside a worker, so only when one is up
                calls["scheduler"] = lambda: scheduler(due, service)
            import sqlite3 as _s
            _q = _s.connect(settings.queue_path)
            print("round", round_no, time.monotonic(), tasks.huey.storage.filename, _q.execute("select count(*) from task").fetchall(), tasks.sync.pending_run_ids(), flush=True)
            _q.close()
            for name, answer in at_once(calls).items():
                print(name, answer.get("status"), answer.get("errors"), flush=True)
                answers.append((round_no, name, answer))
            with database.connection_context():
                for r in SyncEvent.select().order_by(SyncEvent.id.desc()).limit(4):
                    print("   ", r.run_id, r.trigger, r.status, r.in_process, r.owner_pid, r.enqueued_at.time(), r.started_at and r.started_at.time(), r.finished_at and r.finished_at.time(), r.error, flush=True)
            if round_no in NO_WORKER_ROUNDS:
                worker = workers.start()
                print("worker", worker.pid, flush=True)
            if round_no == 5:
                _q = _s.connect(settings.queue_path)
                print("QUEUE", _q.execute("select id, queue, length(data) from task").fetchall(), tasks.sync.pending_run_ids())
                print("WORKERLOG", workers.log()[-6000:])
                break
    finally:
        reads.stop.set()
        reader.join(30)

    with database.connection_context():
        for r in SyncEvent.select(): print(r.run_id, r.trigger, r.status, r.in_process, r.owner_pid, r.enqueued_at, r.started_at, r.finished_at, r.phases)
    print(workers.log()[-3000:])
    for round_no, name, answer in answers:
        assert answer.get("status") in ("succeeded", "skipped"), (round_no, name, answer)
        if name == "cli":
            assert answer["exit_code"] == 0, (round_no, answer)
        assert LOCKED not in json.dumps(answer), (round_no, name, answer)
    intervals = run_intervals()
    assert len(intervals) >= ROUNDS
    for (first, _, first_end), (second, second_start, _) in itertools.pairwise(intervals):
        assert first_end <= second_start, f"runs {first} and {second} overlap"
    with database.connection_context():
        logged = [r.error or "" for r in SyncEvent.select()] + [caplog.text, workers.log()]
    assert not [text for text in logged if LOCKED in text]

    during = [s for s in reads.samples if any(a <= s[1] <= b for _, a, b in intervals)]
    assert [s for s in reads.samples if s[3] is not None] == []
    assert len(during) >= 100, f"only {len(during)} reads overlapped a run"
    took = [s[2] for s in during]
    print(
        f"\nMCP reads during syncs: n={len(took)} max={max(took) * 1000:.1f} ms "
        f"p95={percentile(took, 0.95) * 1000:.1f} ms p50={percentile(took, 0.5) * 1000:.1f} ms"
    )
    assert max(took) < READ_LIMIT_S, sorted(took)[-5:]
