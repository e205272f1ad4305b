"""Benchmark ``testio-sync db copy``: a large mirror from SQLite to PostgreSQL and back.

Builds (or reuses, with ``--home``) a SQLite store synced from the simulator at
the given scale, bugs included, then runs the real command twice in child
processes: the file into a fresh PostgreSQL database, and that database into a
new file. Prints the wall time of each (connection, schema and the rebuilt
search index included) and the copied rows per second, and compares the rate
with the floor:

    each direction      at least 4,000 copied rows/s (wall time of the command)

Usage:
    python scripts/bench_copy.py [--scale large] [--home DIR]
        [--postgres postgresql://postgres@127.0.0.1:5432] [--json]

Exit status 1 when a direction is under the floor or a copy fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-token"
FLOOR_ROWS_PER_S = 4_000
DATABASE = "testio_sync_bench_copy"


def build_store(scale: str, home: Path) -> None:
    """A full in-process sync with bugs of a fresh simulator into ``home``."""
    from testio_sync.service import SyncService
    from testio_sync.settings import Secret, Settings
    from testio_sync.simulator import Simulator
    from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncTrigger

    sim = Simulator(scale=scale, seed=1, token=TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as server:
        settings = Settings(
            home=home, api_base_url=server.base_url, api_token=Secret(TOKEN), refresh_interval_s=0
        )
        started = time.perf_counter()
        handle = SyncService(settings).execute_sync(
            phases=[*DEFAULT_PHASES, SyncPhase.BUGS], trigger=SyncTrigger.CLI, allow_in_process=True
        )
        result = handle.wait(3600)
        print(f"built {scale} store in {time.perf_counter() - started:.1f}s: {result.status.value}")


def fresh_database(server: str) -> str:
    """An empty database on ``server`` for the copy; its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    return f"{server}/{DATABASE}"


def run_copy(env: dict[str, str], target: str) -> dict[str, Any]:
    """``testio-sync db copy --to TARGET --json`` in a child process, timed."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "testio_sync", "db", "copy", "--to", target, "--json", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"copy to {target} failed ({done.returncode}): {done.stderr.strip()}")
    report = json.loads(done.stdout)
    report["wall_seconds"] = round(wall, 2)
    report["wall_rows_per_second"] = round(report["rows"] / wall)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="large", choices=["tiny", "seed", "large"])
    parser.add_argument("--home", type=Path, help="reuse (or build once into) this data dir")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="testio-bench-copy-"))
    os.environ["TESTIO_SYNC_HOME"] = str(home)
    if not (home / "cache.db").exists():
        build_store(args.scale, home)
    url = fresh_database(args.postgres)
    back = home / "copied-back.db"
    back.unlink(missing_ok=True)

    env = {**os.environ, "TESTIO_SYNC_HOME": str(home), "TESTIO_SYNC_DATABASE_URL": ""}
    to_pg = run_copy(env, url)
    to_file = run_copy({**env, "TESTIO_SYNC_DATABASE_URL": url}, str(back))
    results = {"sqlite_to_postgresql": to_pg, "postgresql_to_sqlite": to_file}
    ok = all(r["ok"] and r["wall_rows_per_second"] >= FLOOR_ROWS_PER_S for r in results.values())
    if args.json:
        print(json.dumps({"home": str(home), "results": results, "ok": ok}, indent=2))
        return 0 if ok else 1
    counts = {t["table"]: t["target"] for t in to_pg["tables"]}
    print(f"store: {home} ({counts['tests']:,} tests, {counts['bugs']:,} bugs)")
    for name, r in results.items():
        verdict = "ok" if r["wall_rows_per_second"] >= FLOOR_ROWS_PER_S else "UNDER FLOOR"
        print(
            f"{name:<22} {r['rows']:>9,} rows  {r['wall_seconds']:>7.1f} s wall"
            f" ({r['wall_rows_per_second']:>7,} rows/s; in the copy {r['seconds']:.1f} s,"
            f" {r['rows_per_second']:,} rows/s)  {verdict}"
        )
    print(f"floor: {FLOOR_ROWS_PER_S:,} copied rows/s each way")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
