"""Benchmark ``query_metrics`` over a large store, warm, against the targets.

Builds (or reuses, with ``--home``) a store synced from the simulator at the
given scale, bugs included, then runs a fixed set of 1-, 2- and 3-dimension
queries over all products. Each query runs once to warm the page cache, then
``--repeat`` times; the median and the worst of those runs are compared with
the target of its set (the CPU time of the median is printed too: on a shared
machine it shows what the query costs apart from waiting for a core):

    1 or 2 dimensions   every query under 150 ms
    3 dimensions        every query under 500 ms

Usage:
    python scripts/bench_queries.py [--scale large] [--home DIR] [--repeat 7] [--json]
    python scripts/bench_queries.py --home DIR --plan   # also print each query's plan
    python scripts/bench_queries.py --database-url postgresql://... [--scale large]

With ``--database-url`` (or ``TESTIO_SYNC_DATABASE_URL``) the store is that PostgreSQL
database (or the schema its URL names), synced once when it holds no tests yet.

Exit status 1 when a query misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_store import add_option, is_built, label, open_bench_store

TOKEN = "bench-token"
TARGET_MS = {1: 150.0, 2: 150.0, 3: 500.0}

QUERIES: list[tuple[list[str], list[str], dict[str, Any]]] = [
    # (metrics, dimensions, filters)
    (["test_count", "bug_count", "rejection_rate"], [], {}),
    (["bug_count", "rejection_rate", "review_rate"], ["feature"], {}),
    (["bug_count", "critical_bug_count"], ["severity"], {}),
    (["active_testers", "bug_count"], ["month"], {}),
    (["test_count", "bugs_per_test"], ["testing_type"], {}),
    (["bug_count", "rejection_rate"], ["tester"], {}),
    (["bug_count"], ["platform"], {}),
    (["features_tested", "test_count"], ["product"], {}),
    (["test_count", "tests_created"], ["customer"], {}),
    (["bug_count", "overall_acceptance_rate"], ["severity", "month"], {}),
    (["bug_count", "rejection_rate"], ["feature", "severity"], {}),
    (["bug_count"], ["device_category", "browser"], {}),
    (["test_count", "bug_severity_score"], ["product", "quarter"], {}),
    (["rejection_rate"], ["tester", "week"], {}),
    (["bug_count", "rejection_rate"], ["product", "feature", "month"], {}),
    (["bug_count"], ["platform", "severity", "quarter"], {}),
    (["bug_count", "known_bug_rate"], ["tester", "bug_status", "year"], {}),
    (["test_count", "bug_count"], ["customer", "testing_type", "month"], {}),
]


def build_store(scale: str, home: Path, database_url: str | None = None) -> None:
    """A full in-process sync with bugs of a fresh simulator into ``home`` (or the
    PostgreSQL database at ``database_url``)."""
    from testio_sync.service import SyncService
    from testio_sync.settings import Secret, Settings
    from testio_sync.simulator import Simulator
    from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncTrigger

    sim = Simulator(scale=scale, seed=1, token=TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as server:
        settings = Settings(
            home=home,
            api_base_url=server.base_url,
            api_token=Secret(TOKEN),
            refresh_interval_s=0,
            database_url=Secret(database_url) if database_url else None,
        )
        started = time.perf_counter()
        handle = SyncService(settings).execute_sync(
            phases=[*DEFAULT_PHASES, SyncPhase.BUGS],
            trigger=SyncTrigger.CLI,
            allow_in_process=True,
        )
        result = handle.wait(3600)
        print(f"built {scale} store in {time.perf_counter() - started:.1f}s: {result.status.value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="large", choices=["tiny", "seed", "large"])
    parser.add_argument("--home", type=Path, help="reuse (or build once into) this data dir")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--plan", action="store_true", help="print each query's plan")
    parser.add_argument("--json", action="store_true")
    add_option(parser)
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="testio-bench-queries-"))
    os.environ["TESTIO_SYNC_HOME"] = str(home)
    if not is_built(home, args.database_url):
        build_store(args.scale, home, args.database_url)

    from testio_sync.insights.analytics import MetricsQuery, explain, run_query
    from testio_sync.store import queries

    open_bench_store(home, args.database_url)
    counts = queries.entity_counts()
    store = label(args.database_url, home)
    print(f"store: {store} ({counts['tests']:,} tests, {counts['bugs']:,} bugs)")
    rows = []
    for metrics, dimensions, filters in QUERIES:
        query = MetricsQuery.parse(metrics, dimensions, filters, limit=1000)
        run_query(query)  # warm
        times, cpu = [], []
        for _ in range(args.repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            answer = run_query(query)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
        target = TARGET_MS[max(1, len(dimensions))]
        rows.append(
            {
                "dimensions": dimensions,
                "metrics": metrics,
                "rows": answer["total_rows"],
                "median_ms": round(statistics.median(times), 1),
                "worst_ms": round(max(times), 1),
                "median_cpu_ms": round(statistics.median(cpu), 1),
                "target_ms": target,
                "ok": max(times) < target,
            }
        )
        if args.plan:
            print(f"-- {'x'.join(dimensions) or '(none)'}: {', '.join(metrics)}")
            for line in explain(query):
                print(f"   {line}")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{'dimensions':38} {'rows':>6} {'median ms':>10} {'worst ms':>9} {'cpu ms':>7}"
            f" {'target':>7}"
        )
        for row in rows:
            mark = "ok" if row["ok"] else "SLOW"
            print(
                f"{' x '.join(row['dimensions']) or '(none)':38} {row['rows']:>6}"
                f" {row['median_ms']:>10} {row['worst_ms']:>9} {row['median_cpu_ms']:>7}"
                f" {row['target_ms']:>7.0f} {mark}"
            )
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    for size in (1, 2, 3):
        subset = [r for r in rows if max(1, len(r["dimensions"])) == size]
        if subset:
            print(
                f"{size}-dimension set: median {statistics.median(r['median_ms'] for r in subset)}"
                f" ms, worst {max(r['worst_ms'] for r in subset)} ms"
                f" (target {TARGET_MS[size]:.0f} ms)"
            )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
