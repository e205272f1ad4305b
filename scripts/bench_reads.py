"""Benchmark MCP reads while syncs write: how long ``list_products`` and ``get_sync_status`` take.

Serves a tiny simulator (60 ms latency) on 127.0.0.1, runs forced syncs in this
process one after another, and meanwhile calls the two read tools in turn over
one in-process MCP session. Prints the count, p50, p95 and max of the reads
that overlapped a run, and exits 0 when the max is under the floor, 1 otherwise.

    python scripts/bench_reads.py [--syncs 10] [--floor-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

from mcp import Client

from testio_sync.mcp_server import build_server
from testio_sync.service import SyncService
from testio_sync.settings import Secret, Settings
from testio_sync.simulator import Simulator
from testio_sync.sync.types import SyncOptions

TOKEN = "bench-token"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def read_until(server: object, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """(started, seconds) of each read until ``stop``; a failed read ends the benchmark."""

    async def loop() -> None:
        async with Client(server) as client:
            for tool in itertools.cycle(("list_products", "get_sync_status")):
                if stop.is_set():
                    return
                started, clock = time.time(), time.perf_counter()
                result = await client.call_tool(tool, {})
                if result.is_error:
                    raise SystemExit(f"{tool} failed: {result.content[0].text}")
                samples.append((started, time.perf_counter() - clock))
                await asyncio.sleep(0.005)

    asyncio.run(loop())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=10, help="forced syncs to run")
    parser.add_argument("--floor-ms", type=float, default=100.0, help="slowest read allowed")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)  # the runs' log lines would bury the figures

    sim = Simulator(scale="tiny", seed=5, token=TOKEN, latency_ms=60)
    with sim.serve(host="127.0.0.1", port=0) as api, tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), api_base_url=api.base_url, api_token=Secret(TOKEN))
        service = SyncService(settings)
        service.execute_sync(allow_in_process=True).wait(120)  # reads then have data
        stop, samples = threading.Event(), []
        reader = threading.Thread(target=read_until, args=(build_server(settings), stop, samples))
        reader.start()
        spans = []
        try:
            for _ in range(args.syncs):
                sim.advance(hours=6)
                started = time.time()
                handle = service.execute_sync(
                    options=SyncOptions(force_refresh=True), allow_in_process=True
                )
                handle.wait(120)
                spans.append((started, time.time()))
        finally:
            stop.set()
            reader.join(30)

    during = [took for at, took in samples if any(a <= at <= b for a, b in spans)]
    if not during:
        print("no read overlapped a sync")
        return 1
    slowest_ms = max(during) * 1000
    ok = slowest_ms < args.floor_ms
    print(
        f"MCP reads during {args.syncs} syncs: n={len(during)} "
        f"p50={percentile(during, 0.5) * 1000:.1f} ms p95={percentile(during, 0.95) * 1000:.1f} ms "
        f"max={slowest_ms:.1f} ms; floor {args.floor_ms:.0f} ms: {'ok' if ok else 'ABOVE FLOOR'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
