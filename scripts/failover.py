"""Failover on a shared queue: SIGKILL the worker that holds the sync lock mid-sync.

Starts the simulator (its own process), two ``testio-sync worker`` processes on one
shared queue (Redis or PostgreSQL) and one data directory, and hands them a
``sync --with-bugs``. Once the run holds the sync lock and has stored part of the
bugs, it finds the holder (``testio-sync status --json``: the lock holder record's
PID) and SIGKILLs that worker. Then, touching nothing that would judge the run
itself (it reads the run's row straight from the store), it waits for the other
worker to mark the run ``abandoned``, enqueues the next ``sync --with-bugs`` and
waits for it, and compares the store with the simulator's own counts. Prints a
timeline and the checks; exit 0 when every check passes, 1 otherwise, 2 for bad
options, 130 when interrupted. Everything it started is stopped on exit.

    python scripts/failover.py [--queue-url redis://127.0.0.1:6379/15]
        [--database-url URL] [--scale large] [--latency-ms 20] [--json] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from team_processes import (
    Interrupted,
    Team,
    add_store_arguments,
    queue_in_use,
    queue_reachable,
    raise_on_signals,
    require_shared_queue,
    wait_until,
)

from testio_sync.settings import redact_url

COMPARED = ("products", "features", "tests", "bugs", "users")
ABANDONED_LINE = "abandoned by a dead process"


@dataclass
class Failover:
    queue: str
    store: str
    scale: str
    truth: dict[str, int] = field(default_factory=dict)
    store_counts: dict[str, int] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)  # seconds since the first enqueue
    first_run: str = ""
    next_run: str = ""
    killed_pid: int = 0
    survivor_pid: int = 0
    bugs_at_kill: int = 0
    first_status: str = ""
    first_error: str = ""
    next_status: str = ""
    next_owner_pid: int | None = None
    marked_by_survivor: bool = False
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


def store_rows(team: Team, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read straight from the store (``?`` placeholders), with no side effect.

    ``testio-sync status`` would itself mark a dead run abandoned; this read leaves
    that to the workers, which is what the run shows.
    """
    if team.database_url:
        import psycopg

        with psycopg.connect(team.database_url, connect_timeout=5) as conn:
            return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
    path = team.home / "cache.db"
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return list(conn.execute(sql, params).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def run_row(team: Team, run_id: str) -> dict[str, Any]:
    rows = store_rows(
        team, "SELECT status, owner_pid, error FROM sync_events WHERE run_id = ?", (run_id,)
    )
    if not rows:
        return {}
    status, owner_pid, error = rows[0]
    return {"status": status, "owner_pid": owner_pid, "error": error}


def bug_count(team: Team) -> int:
    rows = store_rows(team, "SELECT COUNT(*) FROM bugs")
    return int(rows[0][0]) if rows else 0


def run(args: argparse.Namespace, base: Path) -> Failover:
    team = Team(home=base / "home", queue_url=args.queue_url, database_url=args.database_url)
    outcome = Failover(
        queue=team.describe_queue(),
        store=redact_url(args.database_url) if args.database_url else "SQLite cache.db",
        scale=args.scale,
    )
    try:
        team.start_simulator(args.scale, latency_ms=args.latency_ms)
        truth = team.simulator_truth()
        outcome.truth = {key: int(truth[key]) for key in COMPARED}
        workers = {w.proc.pid: w for w in team.start_workers(2)}

        t0 = time.monotonic()

        def mark(event: str) -> None:
            outcome.timeline[event] = round(time.monotonic() - t0, 2)

        queued = team.cli_json("sync", "--with-bugs", "--no-wait")
        outcome.first_run = str(queued["run_id"])
        mark("first sync enqueued")

        kill_at = max(1, int(outcome.truth["bugs"] * args.kill_at))
        holder: dict[str, Any] = {}

        def mid_sync() -> bool:
            nonlocal holder
            if bug_count(team) < kill_at:
                return False
            holder = team.cli_json("status").get("lock_holder") or {}
            return holder.get("run_id") == outcome.first_run

        wait_until(mid_sync, timeout_s=args.timeout, what="the sync to store bugs", poll_s=0.02)
        pid = int(holder["pid"])
        if pid not in workers:
            raise RuntimeError(f"the lock holder PID {pid} is none of our workers {list(workers)}")
        os.kill(pid, signal.SIGKILL)
        mark("holder killed")
        outcome.killed_pid = pid
        outcome.bugs_at_kill = bug_count(team)
        workers[pid].proc.wait(10)
        outcome.survivor_pid = next(other for other in workers if other != pid)
        survivor = workers[outcome.survivor_pid]

        wait_until(
            lambda: run_row(team, outcome.first_run).get("status") != "running",
            timeout_s=args.abandon_timeout,
            what="the killed run to be marked",
            poll_s=0.05,
        )
        mark("abandoned seen")
        first = run_row(team, outcome.first_run)
        outcome.first_status, outcome.first_error = first["status"], first["error"] or ""

        def survivor_says_so() -> bool:  # its log line follows the store's update
            log = survivor.log.read_text(errors="replace")
            return any(
                ABANDONED_LINE in line and outcome.first_run in line for line in log.splitlines()
            )

        try:
            wait_until(survivor_says_so, timeout_s=10, what="the survivor's log line")
            outcome.marked_by_survivor = True
        except RuntimeError:  # timed out: someone else marked it, or nobody logged it
            outcome.marked_by_survivor = False

        mark("next sync enqueued")
        result = team.cli_json("sync", "--with-bugs", timeout_s=args.timeout)
        mark("next sync done")
        outcome.next_run = str(result.get("run_id", ""))
        outcome.next_status = str(result.get("status", ""))
        outcome.next_owner_pid = run_row(team, outcome.next_run).get("owner_pid")

        counts = team.cli_json("status")["counts"]
        outcome.store_counts = {key: int(counts[key]) for key in COMPARED}
        outcome.checks = {
            "killed the lock holder mid-sync": 0 < outcome.bugs_at_kill < outcome.truth["bugs"],
            "the run is marked abandoned": outcome.first_status == "abandoned",
            "the surviving worker marked it": outcome.marked_by_survivor,
            "the next sync succeeded": outcome.next_status == "succeeded",
            "the surviving worker ran it": outcome.next_owner_pid == outcome.survivor_pid,
            "store equals the simulator's truth": outcome.store_counts == outcome.truth,
        }
    finally:
        team.stop_all()
    if team.queue_url:
        outcome.checks["queue cleaned"] = queue_in_use(team.settings()) == 0
    return outcome


def render(outcome: Failover) -> str:
    lines = [
        f"Failover: 2 workers, queue {outcome.queue}, store {outcome.store}, scale {outcome.scale}",
        f"  first run {outcome.first_run}: lock holder PID {outcome.killed_pid} SIGKILLed "
        f"with {outcome.bugs_at_kill:,} of {outcome.truth.get('bugs', 0):,} bugs stored; "
        f"survivor PID {outcome.survivor_pid}",
        "Timeline (s after the first enqueue):",
        *(f"  {at:7.2f}  {event}" for event, at in outcome.timeline.items()),
        f"  first run: {outcome.first_status} ({outcome.first_error})",
        f"  next run {outcome.next_run}: {outcome.next_status}, "
        f"ran in PID {outcome.next_owner_pid}",
        "Store vs the simulator's truth:",
        *(
            f"  {key:9} {outcome.store_counts.get(key, 0):>8,} {outcome.truth.get(key, 0):>8,}"
            for key in COMPARED
        ),
        "Checks:",
        *(f"  {'ok  ' if passed else 'FAIL'} {name}" for name, passed in outcome.checks.items()),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(parser)
    parser.add_argument("--scale", default="large", choices=("tiny", "seed", "large"))
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency")
    parser.add_argument(
        "--kill-at", type=float, default=0.25, help="kill once this share of the bugs is stored"
    )
    parser.add_argument("--abandon-timeout", type=float, default=90.0, metavar="S")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S")
    parser.add_argument("--home", type=Path, help="keep the data here (a new folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    require_shared_queue(parser, args.queue_url, ": failover needs a shared queue")
    if not 0 < args.kill_at < 1:
        parser.error("--kill-at must be between 0 and 1")
    if args.home is not None and args.home.exists() and any(args.home.iterdir()):
        parser.error(f"--home {args.home} is not empty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_signals()
    if not queue_reachable(args.queue_url):
        return 2
    try:
        if args.home is not None:
            args.home.mkdir(parents=True, exist_ok=True)
            outcome = run(args, args.home)
        else:
            with tempfile.TemporaryDirectory(prefix="testio-failover-") as base:
                outcome = run(args, Path(base))
    except Interrupted:
        print("Interrupted: everything started was stopped.", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(asdict(outcome) | {"ok": outcome.ok}, indent=2) if args.json else render(outcome)
    )
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
