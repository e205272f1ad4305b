"""Load a team deployment: 30 MCP clients on 3 HTTP servers while a ``large`` sync writes.

Everything runs on 127.0.0.1 as real processes and stops by itself: the simulator
(``testio-sync simulate``), 2 workers (``testio-sync worker``) on a shared queue
(Redis or PostgreSQL), 3 servers (``serve --transport http --no-worker``, bearer
tokens required). A first ``sync --with-bugs`` fills the mirror (setup, not measured);
then ``sync --with-bugs --force`` walks every page again and refetches and rewrites
every bug while ``--clients`` real ``mcp.Client`` sessions over streamable HTTP,
spread over the servers, call in a loop the quality report, ``query_metrics``,
``search`` and the list tools (``list_bugs`` for one test) for ``--seconds``.

Prints calls, errors, p50, p95 and max latency per tool and overall (and over the
calls made while the sync ran), the sync's duration and status, and the target:
0 errors and p95 under 150 ms. ``--compare-single`` runs the same load against
one SQLite server with its own worker and no shared queue, and prints both in one
table. ``--database-url`` (or ``TESTIO_SYNC_DATABASE_URL``) is passed to every
process of the team. The queue's jobs are deleted after; on Ctrl-C or an error
everything started is stopped. Exit 0 when the team meets the target, 1 when it
misses it, 130 when interrupted.

    python scripts/load_team.py [--seconds 60] [--clients 30] [--scale large]
        [--queue-url redis://127.0.0.1:6379/15] [--database-url URL]
        [--think-ms 1000] [--latency-ms 300] [--compare-single] [--json]

``--latency-ms 300`` (the low end of production's latencies) spreads the sync over
about half the minute, as a real API does; 0 makes it as dense in CPU as it can be.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from team_processes import (
    CLI,
    SERVER_TOKEN,
    Interrupted,
    Started,
    Team,
    add_store_arguments,
    queue_in_use,
    queue_reachable,
    raise_on_signals,
    require_shared_queue,
)

from testio_sync.settings import redact_url

TARGET_P95_MS = 150.0
SEARCHES = (
    "checkout crash",
    "login button",
    "price label wrong value",
    "video loads forever",
    "payments error message",
    "search field typo",
    "date picker misaligned",
    "cart",
)
METRIC_QUERIES: tuple[dict[str, Any], ...] = (
    {"metrics": ["bug_count", "rejection_rate"], "dimensions": ["month"]},
    {"metrics": ["test_count", "bugs_per_test"], "dimensions": ["testing_type"]},
    {"metrics": ["bug_count"], "dimensions": ["severity", "bug_status"]},
    {"metrics": ["bug_count", "active_acceptance_rate"], "dimensions": ["feature"], "limit": 10},
)
# (tool, weight): the report, analytics, search and the three list tools.
MIX = (
    ("get_product_quality_report", 2),
    ("query_metrics", 3),
    ("search", 3),
    ("list_products", 1),
    ("list_tests", 1),
    ("list_bugs", 1),
)


@dataclass
class Sample:
    tool: str
    seconds: float
    ok: bool
    during_sync: bool


@dataclass
class Figures:
    calls: int
    errors: int
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass
class SetupResult:
    name: str
    description: str
    prefill_s: float = 0.0
    sync_status: str = ""
    sync_s: float = 0.0  # from the command's start to its end
    sync_job_s: float = 0.0  # the run's own duration, as the worker recorded it
    sync_counts: dict[str, int] = field(default_factory=dict)
    load_s: float = 0.0
    client_cpu_s: float = 0.0
    load_average: float = 0.0  # 1-minute load average at the end of the load: a busy machine
    per_tool: dict[str, Figures] = field(default_factory=dict)
    overall: Figures | None = None
    during_sync: Figures | None = None
    first_errors: list[str] = field(default_factory=list)
    queue_cleaned: bool | None = None

    @property
    def meets_target(self) -> bool:
        return (
            self.overall is not None
            and self.overall.errors == 0
            and self.overall.p95_ms < TARGET_P95_MS
        )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def figures(samples: list[Sample]) -> Figures:
    times = [s.seconds * 1000 for s in samples]
    return Figures(
        calls=len(samples),
        errors=sum(not s.ok for s in samples),
        p50_ms=round(percentile(times, 0.5), 1),
        p95_ms=round(percentile(times, 0.95), 1),
        max_ms=round(max(times, default=0.0), 1),
    )


# -- the clients -------------------------------------------------------------------------


def arguments(
    tool: str, rng: random.Random, product_ids: list[int], test_ids: list[int]
) -> dict[str, Any]:
    product = rng.choice(product_ids)
    if tool == "get_product_quality_report":
        return {"product_ids": [product]}
    if tool == "query_metrics":
        query = dict(rng.choice(METRIC_QUERIES))
        if rng.random() < 0.5:
            query["filters"] = {"product": product}
        return query
    if tool == "search":
        return {"query": rng.choice(SEARCHES), "limit": 10}
    if tool == "list_products":
        return {}
    if tool == "list_bugs":  # the bugs of one test, as an assistant drills down
        return {"test_ids": [rng.choice(test_ids)], "limit": 20}
    return {"product_ids": [product], "limit": 20}


async def one_client(
    url: str,
    index: int,
    product_ids: list[int],
    ready: asyncio.Queue[int],
    go: asyncio.Event,
    clock: dict[str, Any],
    samples: list[Sample],
    errors: list[str],
) -> None:
    """One MCP session: connect, say it is ready, then call tools in a loop until the end."""
    rng = random.Random(index)
    tools = [tool for tool, weight in MIX for _ in range(weight)]
    headers = {"Authorization": f"Bearer {SERVER_TOKEN}"}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        await client.list_tools()  # the session is up before the clock starts
        where = {"product_ids": product_ids, "limit": 100, "offset": (index * 100) % 600}
        listed = await client.call_tool("list_tests", where)
        test_ids = [int(t["id"]) for t in (listed.structured_content or {}).get("tests", [])]
        if listed.is_error or not test_ids:
            raise RuntimeError(f"client {index}: list_tests gave no test ids")
        ready.put_nowait(index)
        await go.wait()
        while time.monotonic() < clock["stop_at"]:
            tool = rng.choice(tools)
            args = arguments(tool, rng, product_ids, test_ids)
            during = clock["sync_running"]()
            started = time.perf_counter()
            try:
                result = await client.call_tool(tool, args)
                ok = not result.is_error
                problem = "" if ok else f"{tool}: {result.content[0].text}"  # type: ignore[union-attr]
            except Exception as exc:  # a broken connection counts as an error, not a crash
                ok, problem = False, f"{tool}: {type(exc).__name__}: {exc}"
            samples.append(Sample(tool, time.perf_counter() - started, ok, during))
            if problem and len(errors) < 5:
                errors.append(problem[:300])
            if clock["think_s"]:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * clock["think_s"])


async def run_clients(
    urls: list[str],
    count: int,
    seconds: float,
    product_ids: list[int],
    start_sync: Callable[[], Callable[[], bool]],
    think_s: float = 0.0,
) -> tuple[list[Sample], list[str], float]:
    """Connect ``count`` clients (round robin over ``urls``), start the sync, then load.

    Each client waits ``think_s`` on average (0.5x to 1.5x) between calls; 0 calls
    back to back, which measures a saturated server rather than one call's cost.
    """
    samples: list[Sample] = []
    errors: list[str] = []
    ready: asyncio.Queue[int] = asyncio.Queue()
    go = asyncio.Event()
    clock: dict[str, Any] = {"think_s": think_s}
    async with asyncio.TaskGroup() as group:
        for index in range(count):
            url = urls[index % len(urls)]
            group.create_task(
                one_client(url, index, product_ids, ready, go, clock, samples, errors)
            )
        for _ in range(count):
            await asyncio.wait_for(ready.get(), timeout=120)
        clock["sync_running"] = start_sync()
        clock["began"] = time.monotonic()
        clock["stop_at"] = clock["began"] + seconds
        go.set()
    return samples, errors, time.monotonic() - clock["began"]


# -- one setup ---------------------------------------------------------------------------


def run_setup(
    name: str,
    team: Team,
    urls: list[str],
    args: argparse.Namespace,
    product_ids: list[int],
) -> SetupResult:
    """Prefill, then the load during ``sync --with-bugs``; ``team``'s processes already run."""
    result = SetupResult(name, "")
    began = time.monotonic()
    prefill = team.cli_json("sync", "--with-bugs", timeout_s=args.sync_timeout)
    if prefill.get("status") != "succeeded":
        raise RuntimeError(f"{name}: the first sync ended {prefill.get('status')}: {prefill}")
    result.prefill_s = round(time.monotonic() - began, 1)
    sync = BackgroundSync(team, name)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        samples, errors, took = asyncio.run(
            run_clients(
                urls, args.clients, args.seconds, product_ids, sync.start, args.think_ms / 1000
            )
        )
    except ExceptionGroup as group:  # a client that could not connect stops the load
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise RuntimeError(f"{name}: a client failed to start: {first}") from None
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu_s = round(
        cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime, 1
    )
    result.load_s = round(took, 1)
    result.load_average = round(os.getloadavg()[0], 1)
    outcome = sync.wait(args.sync_timeout)
    result.sync_status = str(outcome.get("status", f"exit {sync.started.proc.returncode}"))
    result.sync_s = round(sync.duration_s, 1)
    result.sync_job_s = round(float(outcome.get("duration_seconds") or 0.0), 1)
    result.sync_counts = {key: int(outcome.get(key) or 0) for key in ("bugs_refreshed",)}
    by_tool: dict[str, list[Sample]] = {}
    for sample in samples:
        by_tool.setdefault(sample.tool, []).append(sample)
    result.per_tool = {tool: figures(by_tool.get(tool, [])) for tool, _ in MIX}
    result.overall = figures(samples)
    result.during_sync = figures([s for s in samples if s.during_sync])
    result.first_errors = errors
    return result


class BackgroundSync:
    """``sync --with-bugs --json`` as a process of the team, started when the load starts."""

    def __init__(self, team: Team, name: str) -> None:
        self.team = team
        self.name = name
        self.started: Started | None = None
        self.began = 0.0
        self.ended: float | None = None

    def start(self) -> Callable[[], bool]:
        self.began = time.monotonic()
        argv = [*CLI, "sync", "--with-bugs", "--force", "--json", "--quiet"]
        self.started = self.team.spawn(f"{self.name}-sync", argv, split_stderr=True)
        return self.running

    def running(self) -> bool:
        assert self.started is not None
        if self.started.proc.poll() is None:
            return True
        if self.ended is None:
            self.ended = time.monotonic()
        return False

    @property
    def duration_s(self) -> float:
        return (self.ended or time.monotonic()) - self.began

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """The sync's JSON result, once it ended (within ``timeout_s``)."""
        assert self.started is not None
        try:
            self.started.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"{self.name}: the sync did not end within {timeout_s:g} s"
            ) from None
        self.running()
        try:
            return dict(json.loads(self.started.log.read_text()))
        except ValueError:
            errors = self.started.log.with_suffix(".err").read_text(errors="replace")
            raise RuntimeError(
                f"{self.name}: the sync printed no result: {errors[-500:]}"
            ) from None


def run_team(args: argparse.Namespace, base: Path, api_base_url: str) -> SetupResult:
    team = Team(
        home=base / "team" / "home", queue_url=args.queue_url, database_url=args.database_url
    )
    team.api_base_url = api_base_url
    try:
        team.start_workers(2)
        urls = [team.start_server(f"server{n + 1}")[1] for n in range(3)]
        result = run_setup("team", team, urls, args, product_ids_of(team))
    finally:
        team.stop_all()
    store = redact_url(args.database_url) if args.database_url else "SQLite store"
    result.description = f"2 workers, 3 servers, queue {team.describe_queue()}, {store}"
    result.queue_cleaned = queue_in_use(team.settings()) == 0
    return result


def run_single(args: argparse.Namespace, base: Path, api_base_url: str) -> SetupResult:
    team = Team(home=base / "single" / "home", queue_url=None)
    team.api_base_url = api_base_url
    try:
        _, url = team.start_server("single-server", worker=True)
        result = run_setup("single", team, [url], args, product_ids_of(team))
    finally:
        team.stop_all()
    result.description = "1 server with its own worker, SQLite queue and store"
    return result


def product_ids_of(team: Team) -> list[int]:
    return sorted(int(pid) for pid in team.simulator_truth()["per_product"])


# -- output ------------------------------------------------------------------------------


def render(results: list[SetupResult], args: argparse.Namespace) -> str:
    pace = f"{args.think_ms:g} ms think time" if args.think_ms else "calls back to back"
    head = (
        f"Load: {args.clients} MCP clients ({pace}) for {args.seconds:g} s, scale {args.scale}, "
        f"during `sync --with-bugs --force` (target: 0 errors, p95 under {TARGET_P95_MS:g} ms)"
    )
    lines = [head]
    for result in results:
        lines.append(f"  {result.name}: {result.description}")
    lines.append(
        f"{'setup':7} {'tool':28} {'calls':>6} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'max ms':>8}"
    )
    for result in results:
        rows = [
            *result.per_tool.items(),
            ("all", result.overall),
            ("all, while syncing", result.during_sync),
        ]
        for n, (tool, fig) in enumerate(rows):
            if fig is None:
                continue
            label = result.name if n == 0 else ""
            lines.append(
                f"{label:7} {tool:28} {fig.calls:>6} {fig.errors:>6} {fig.p50_ms:>8.1f} "
                f"{fig.p95_ms:>8.1f} {fig.max_ms:>8.1f}"
            )
    for result in results:
        lines.append(
            f"{result.name}: first sync (setup) {result.prefill_s:.1f} s; forced sync "
            f"{result.sync_status} in {result.sync_s:.1f} s (run {result.sync_job_s:.1f} s, "
            f"{result.sync_counts.get('bugs_refreshed', 0):,} bugs); load {result.load_s:.1f} s; "
            f"client CPU {result.client_cpu_s:.1f} s; load average {result.load_average:.1f}"
            + ("" if result.queue_cleaned is None else f"; queue cleaned: {result.queue_cleaned}")
        )
        for problem in result.first_errors:
            lines.append(f"  error: {problem}")
        overall = result.overall
        if overall is not None:
            verdict = "meets the target" if result.meets_target else "MISSES the target"
            lines.append(
                f"{result.name}: {overall.errors} errors, p95 {overall.p95_ms:.1f} ms: {verdict}"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--clients", type=int, default=30, help="concurrent MCP clients")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause of each client between calls (0: back to back, a saturation test)",
    )
    parser.add_argument("--scale", default="large", choices=("tiny", "seed", "large"))
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator latency")
    parser.add_argument("--sync-timeout", type=float, default=900.0, metavar="S")
    parser.add_argument("--compare-single", action="store_true", help="also load one SQLite server")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    require_shared_queue(parser, args.queue_url, " (the team's queue)")
    if args.seconds <= 0 or args.clients < 1 or args.think_ms < 0:
        parser.error("--seconds must be positive, --clients at least 1, --think-ms at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_signals()
    if not queue_reachable(args.queue_url):
        return 2
    results: list[SetupResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="testio-load-") as folder:
            base = Path(folder)
            simulator = Team(home=base / "simulator" / "home", queue_url=None)
            try:
                api = simulator.start_simulator(args.scale, latency_ms=args.latency_ms)
                results.append(run_team(args, base, api))
                if args.compare_single:
                    results.append(run_single(args, base, api))
            finally:
                simulator.stop_all()
    except Interrupted:
        print("Interrupted: everything started was stopped.", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        payload = {
            "clients": args.clients,
            "think_ms": args.think_ms,
            "seconds": args.seconds,
            "scale": args.scale,
            "target": {"errors": 0, "p95_ms_under": TARGET_P95_MS},
            "setups": {r.name: asdict(r) | {"meets_target": r.meets_target} for r in results},
        }
        print(json.dumps(payload, indent=2))
    else:
        print(render(results, args))
    return 0 if results[0].meets_target else 1


if __name__ == "__main__":
    sys.exit(main())
