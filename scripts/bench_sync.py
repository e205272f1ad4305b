"""Benchmark the sync against the simulator and compare each run with its floor.

The simulator and the worker run as their own processes, as in production.
For every scenario it prints wall time (the job's own run, from the worker
picking it up to its recorded end; "caller s" adds the queue pickup and the
caller's polling, which the enqueue-to-start figure measures on its own), API
requests by endpoint (from the simulator's stats), rows written per second, the
worker's peak memory, and the ratio to the request-budget floor:

    latency x (1 round trip for the product list
               + 1 for the last bug batch, where bugs are fetched
               + the other needed requests / concurrency)

No page waits for the one before it (walks read ahead), so no chain of pages
enters the floor. Wasted requests are test pages fetched past a product's end:
for the syncs that walk every product to its end, the test-list requests minus
those the simulator's own test counts need. Such a walk asks for the newest 150
tests in one request, then for the pages past them: 1 a product, plus
(tests - 150) // 25 + 1 for a product with at least 150 tests. They are left out
of the floor's requests.

Usage:
    python scripts/bench_sync.py [--latency-ms 100] [--scale seed] [--json]
    python scripts/bench_sync.py --scale large --latency-ms 500 --tries 5
    TESTIO_SYNC_QUEUE_URL=redis://127.0.0.1:6379/9 python scripts/bench_sync.py  # shared queue

Exit status 1 when a deep sync (first, with bugs, --force) misses 1.3x its floor,
wastes more than 10% of a full sync's requests, or a budget below is broken.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

TOKEN = "bench-token"
FLOOR_FACTOR = 1.3
WASTE_SHARE = 0.10  # wasted requests allowed, as a share of a full sync's requests
PER_PAGE = 25
UNPAGED_LIMIT = 150  # tests the API answers without ``page``: the newest ones
# Syncs that walk every product's tests to the end: their waste is measurable, and
# they are the ones read-ahead is for.
DEEP = ("initial sync + bugs", "full sync", "--force resync")
STARTUP_TRIES = 20


def start_simulator(scale: str, latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testio_sync.simulator",
            "--port",
            "0",
            "--scale",
            scale,
            "--seed",
            "1",
            "--token",
            TOKEN,
            "--latency-ms",
            str(latency_ms),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, line.split()[-1]


def requests_to_the_end(tests: int) -> int:
    """The newest tests in one request, then the pages past them, the last one short."""
    if tests < UNPAGED_LIMIT:
        return 1
    return 1 + (tests - UNPAGED_LIMIT) // PER_PAGE + 1


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process so far, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, base_url: str, latency_ms: float, home: Path, sim_pid: int) -> None:
        self.sim_pid = sim_pid
        from testio_sync.settings import Secret, Settings, queue_url_from_env

        self.root = base_url.rsplit("/customer/v2", 1)[0]
        self.latency_s = latency_ms / 1000
        self.http = httpx.Client(base_url=self.root, timeout=60)
        self.settings = Settings(
            home=home,
            api_base_url=base_url,
            api_token=Secret(TOKEN),
            refresh_interval_s=0,
            queue_url=queue_url_from_env(),  # TESTIO_SYNC_QUEUE_URL: bench a shared queue
        )

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"/_simulator/{path}", json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def rows(self) -> int:
        from testio_sync.store import queries

        counts = queries.entity_counts()
        return counts["tests"] + counts["bugs"] + counts["features"] + counts["products"]

    def pages_to_the_end(self) -> int:
        """Test-list requests a walk of every product to its end needs (simulator's counts)."""
        per_product = self.control("GET", "truth")["per_product"]
        return sum(requests_to_the_end(row["tests"]) for row in per_product.values())

    def run(self, name: str, service: Any, worker_pid: int, **kw: Any) -> dict[str, Any]:
        needed_pages = self.pages_to_the_end()
        self.control("POST", "stats/reset")
        cpu_before = sum(psutil.Process(worker_pid).cpu_times()[:2])
        sim_before = sum(psutil.Process(self.sim_pid).cpu_times()[:2])
        rows_before = self.rows()
        started = time.monotonic()
        handle = service.execute_sync(**kw)
        result = handle.wait(600)
        caller = time.monotonic() - started
        from testio_sync.sync import runs

        row = runs.get_run(handle.run_id)
        wall = (row.finished_at - row.started_at).total_seconds()  # the job, pickup excluded
        worker_cpu = sum(psutil.Process(worker_pid).cpu_times()[:2]) - cpu_before
        sim_cpu = sum(psutil.Process(self.sim_pid).cpu_times()[:2]) - sim_before
        stats = self.control("GET", "stats")
        by_endpoint = stats["by_endpoint"]
        requests = stats["total"]
        pages = [p.get("pages", 0) for p in result.per_product.values()]
        wasted = None
        if name in DEEP:
            wasted = by_endpoint.get("exploratory_tests", 0) - needed_pages
        serial = 1 + (1 if by_endpoint.get("bugs") else 0)  # round trips nothing overlaps
        parallel = max(0, requests - (wasted or 0) - serial)
        floor = self.latency_s * (serial + parallel / self.settings.max_concurrent_requests)
        written = (
            result.tests_discovered
            + result.tests_updated
            + result.bugs_refreshed
            + result.features_refreshed
            + result.products_synced
        )
        return {
            "scenario": name,
            "status": result.status.value,
            "wall_s": round(wall, 3),
            "caller_s": round(caller, 3),
            "engine_s": round(result.duration_seconds, 3),
            "requests": requests,
            "by_endpoint": by_endpoint,
            "wasted": wasted,
            "floor_s": round(floor, 3),
            "ratio": round(wall / floor, 2) if floor else None,
            "rows_written": written,
            "rows_per_s": round(written / wall) if wall else None,
            "store_rows": self.rows(),
            "store_rows_before": rows_before,
            "worker_peak_mb": round(peak_rss_mb(worker_pid), 1),
            "worker_cpu_s": round(worker_cpu, 2),
            "simulator_cpu_s": round(sim_cpu, 2),
            "products": len(pages),
        }


def time_quality_report(tries: int = 5) -> dict[str, float]:
    """Milliseconds for the quality report over every stored product, warm store."""
    from testio_sync.insights.filters import ReportFilters
    from testio_sync.insights.report import build_quality_report
    from testio_sync.store import queries

    filters = ReportFilters.parse(product_ids=queries.product_ids())
    build_quality_report(filters)  # warm the page cache
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        build_quality_report(filters)
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def enqueue_to_start(service: Any, tries: int) -> dict[str, float]:
    """Seconds from enqueue to the job's start, with an idle worker."""
    from testio_sync.sync import runs
    from testio_sync.sync.types import SyncPhase, SyncScope

    delays = []
    for _ in range(tries):
        time.sleep(0.6)  # let the worker go idle (its polling delay grows when idle)
        handle = service.execute_sync(phases=[SyncPhase.PRODUCTS], scope=SyncScope())
        handle.wait(60)
        row = runs.get_run(handle.run_id)
        delays.append((row.started_at - row.enqueued_at).total_seconds())
    delays.sort()
    return {
        "median_s": round(statistics.median(delays), 3),
        "p95_s": round(delays[max(0, math.ceil(0.95 * len(delays)) - 1)], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--scale", default="seed", choices=["tiny", "seed", "large"])
    parser.add_argument("--tries", type=int, default=STARTUP_TRIES)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    sim, base_url = start_simulator(args.scale, args.latency_ms)
    home = Path(tempfile.mkdtemp(prefix="testio-bench-"))
    os.environ["TESTIO_SYNC_HOME"] = str(home)
    worker = None
    try:
        from testio_sync.service import SyncService
        from testio_sync.sync.types import DEFAULT_PHASES, SyncOptions, SyncPhase
        from testio_sync.tasks.consumer import spawn_worker

        with_bugs = [*DEFAULT_PHASES, SyncPhase.BUGS]
        # A store of its own: the initial sync with bugs, all in one run.
        first_home = Path(tempfile.mkdtemp(prefix="testio-bench-first-"))
        first = Bench(base_url, args.latency_ms, first_home, sim.pid)
        worker = spawn_worker(first.settings)
        initial = first.run(
            "initial sync + bugs", SyncService(first.settings), worker.pid, phases=with_bugs
        )
        worker.terminate()
        worker.wait(10)
        bench = Bench(base_url, args.latency_ms, home, sim.pid)
        service = SyncService(bench.settings)
        worker = spawn_worker(bench.settings)
        rows = [
            initial,
            bench.run("full sync", service, worker.pid),
            bench.run("full sync + bugs", service, worker.pid, phases=with_bugs),
            bench.run("incremental, nothing new", service, worker.pid),
        ]
        bench.control("POST", "advance", {"hours": 24})
        rows.append(bench.run("incremental after 24h", service, worker.pid))
        rows.append(
            bench.run(
                "--force resync", service, worker.pid, options=SyncOptions(force_refresh=True)
            )
        )
        report_ms = time_quality_report()
        startup = enqueue_to_start(service, args.tries)
        truth = bench.control("GET", "truth")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        sim.terminate()
        sim.wait(10)

    load = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    products = rows[1]["products"]
    deep = [r for r in rows if r["scenario"] in DEEP]
    waste_cap = WASTE_SHARE * rows[1]["requests"]
    checks = {
        f"first, with bugs and --force syncs within {FLOOR_FACTOR}x of the floor": all(
            r["ratio"] is not None and r["ratio"] <= FLOOR_FACTOR for r in deep
        ),
        f"wasted requests <= {WASTE_SHARE:.0%} of a full sync's ({waste_cap:.1f})": all(
            r["wasted"] is not None and r["wasted"] <= waste_cap for r in deep
        ),
        "incremental with nothing new == 2 requests per product + 1": rows[3]["requests"]
        == 2 * products + 1,
        "enqueue-to-start median < 0.3 s": startup["median_s"] < 0.3,
        "quality report (warm) < 500 ms": report_ms["median_ms"] < 500,
        "every sync succeeded": all(r["status"] == "succeeded" for r in rows),
    }
    if args.json:
        print(
            json.dumps(
                {
                    "scale": args.scale,
                    "latency_ms": args.latency_ms,
                    "runs": rows,
                    "enqueue_to_start": startup,
                    "quality_report": report_ms,
                    "truth": truth,
                    "load_average_1min": load,
                    "checks": checks,
                },
                indent=2,
            )
        )
    else:
        print(
            f"scale={args.scale} latency={args.latency_ms:.0f}ms concurrency="
            f"{bench.settings.max_concurrent_requests} load average {load['before']} -> "
            f"{load['after']} on {os.cpu_count()} cores"
        )
        header = (
            f"{'scenario':<26}{'status':<10}{'wall s':>8}{'caller s':>9}{'floor s':>9}{'ratio':>7}"
            f"{'requests':>10}{'wasted':>8}{'rows/s':>9}{'peak MB':>9}{'cpu s':>7}{'sim cpu':>8}"
        )
        print(header)
        for r in rows:
            print(
                f"{r['scenario']:<26}{r['status']:<10}{r['wall_s']:>8.2f}{r['caller_s']:>9.2f}"
                f"{r['floor_s']:>9.2f}"
                f"{r['ratio']:>7.2f}{r['requests']:>10}"
                f"{'-' if r['wasted'] is None else r['wasted']:>8}"
                f"{r['rows_per_s'] or 0:>9}{r['worker_peak_mb']:>9.1f}{r['worker_cpu_s']:>7.2f}"
                f"{r['simulator_cpu_s']:>8.2f}"
            )
        for r in rows:
            print(f"  {r['scenario']}: {json.dumps(r['by_endpoint'], sort_keys=True)}")
        print(
            f"enqueue-to-start: median {startup['median_s']}s, p95 {startup['p95_s']}s "
            f"({args.tries} tries)"
        )
        print(
            f"quality report over all products (warm store): median {report_ms['median_ms']} ms, "
            f"max {report_ms['max_ms']} ms"
        )
        for name, ok in checks.items():
            print(f"[{'ok' if ok else 'MISSED'}] {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
