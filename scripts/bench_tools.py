"""Cost of one MCP tool call: the server's CPU and the wall time, one call at a time.

Starts the simulator and one ``serve --transport http`` server (token required, no
worker) on 127.0.0.1, fills the mirror with ``sync --with-bugs`` (setup, not measured),
then one ``mcp.Client`` calls each tool of the team load (``load_team.py``'s mix and
arguments) ``--calls`` times in a row and prints, per tool: the server process's CPU
per call (user + system, from psutil), the client's CPU per call and the median and
p95 wall time. The floor is the protocol itself: ``tools/list``, answered by the MCP
framework without touching the mirror.

The weighted mix line gives what 30 clients calling back to back need: with C cores,
a call costs (server + client CPU), so the mean latency is at least
30 x (server + client) / C. That is the bound ``load_team.py`` meets or not.

    python scripts/bench_tools.py [--scale large] [--calls 60] [--database-url URL] [--json]

Exit 0 when every tool's median wall time is under 50 ms, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import psutil
from load_team import MIX, arguments
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from team_processes import SERVER_TOKEN, Interrupted, Team, raise_on_signals

MEDIAN_TARGET_MS = 50.0
CLIENTS = 30  # the team load's clients, for the bound the mix line prints


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measure(
    url: str, server: psutil.Process, product_ids: list[int], calls: int
) -> dict[str, dict[str, float]]:
    """Per tool: server and client CPU ms per call, median and p95 wall ms."""
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {SERVER_TOKEN}"}
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    rows: dict[str, dict[str, float]] = {}
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        listed = await client.call_tool("list_tests", {"product_ids": product_ids, "limit": 100})
        test_ids = [int(t["id"]) for t in (listed.structured_content or {})["tests"]]

        async def call(tool: str) -> None:
            if tool == "tools/list":
                await client.list_tools()
                return
            result = await client.call_tool(tool, arguments(tool, rng, product_ids, test_ids))
            if result.is_error:
                raise RuntimeError(f"{tool}: {result.content[0].text}")

        for tool in ["tools/list", *(name for name, _ in MIX)]:
            await call(tool)  # warm: imports, page cache
            server_before, client_before = _cpu(server), _own_cpu()
            walls = []
            for _ in range(calls):
                started = time.perf_counter()
                await call(tool)
                walls.append((time.perf_counter() - started) * 1000)
            walls.sort()
            rows[tool] = {
                "server_cpu_ms": round((_cpu(server) - server_before) * 1000 / calls, 2),
                "client_cpu_ms": round((_own_cpu() - client_before) * 1000 / calls, 2),
                "median_ms": round(statistics.median(walls), 2),
                "p95_ms": round(walls[min(len(walls) - 1, int(0.95 * len(walls)))], 2),
            }
    return rows


def mix_line(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    weight = sum(w for _, w in MIX)
    server = sum(rows[t]["server_cpu_ms"] * w for t, w in MIX) / weight
    client = sum(rows[t]["client_cpu_ms"] * w for t, w in MIX) / weight
    cores = psutil.cpu_count() or 1
    return {
        "server_cpu_ms": round(server, 2),
        "client_cpu_ms": round(client, 2),
        "cores": cores,
        "bound_mean_ms_30_back_to_back": round(CLIENTS * (server + client) / cores, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large", choices=["tiny", "seed", "large"])
    parser.add_argument("--calls", type=int, default=60, help="calls of each tool (default 60)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL store to use")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    raise_on_signals()
    home = Path(tempfile.mkdtemp(prefix="testio-bench-tools-"))
    team = Team(home=home, queue_url=None, database_url=args.database_url)
    try:
        team.start_simulator(args.scale)
        team.cli("sync", "--with-bugs", timeout_s=1800)
        started, url = team.start_server("server")
        server = psutil.Process(started.proc.pid)
        product_ids = sorted(int(pid) for pid in team.simulator_truth()["per_product"])
        rows = asyncio.run(measure(url, server, product_ids, args.calls))
    except Interrupted:
        return 130
    finally:
        team.stop_all()
    mix = mix_line(rows)
    ok = all(r["median_ms"] < MEDIAN_TARGET_MS for r in rows.values())
    if args.json:
        print(json.dumps({"tools": rows, "mix": mix, "ok": ok}, indent=2))
        return 0 if ok else 1
    store = "PostgreSQL" if args.database_url else "SQLite"
    print(f"One call at a time, {args.calls} per tool, scale {args.scale}, {store} store")
    print(f"{'tool':<28}{'server CPU ms':>14}{'client CPU ms':>14}{'median ms':>11}{'p95 ms':>9}")
    for tool, r in rows.items():
        print(
            f"{tool:<28}{r['server_cpu_ms']:>14.1f}{r['client_cpu_ms']:>14.1f}"
            f"{r['median_ms']:>11.1f}{r['p95_ms']:>9.1f}"
        )
    label = "weighted mix (load_team)"
    print(f"{label:<28}{mix['server_cpu_ms']:>14.1f}{mix['client_cpu_ms']:>14.1f}")
    print(
        f"{CLIENTS} clients back to back on {mix['cores']} cores: mean latency at least "
        f"{mix['bound_mean_ms_30_back_to_back']} ms (CPU per call x clients / cores)"
    )
    print(f"[{'ok' if ok else 'MISSED'}] every tool's median under {MEDIAN_TARGET_MS:g} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
