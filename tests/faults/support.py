"""Helpers for the fault, crash and contention suite: workers to kill, stores to audit.

Everything here works on real parts: worker processes from ``spawn_worker``, the
SQLite file of a test's own data directory, and the simulator's world.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.postgres import conninfo
from testio_sync.tasks.consumer import spawn_worker
from testio_sync.tasks.liveness import worker_alive

ENTITY_TABLES = ("products", "features", "tests", "bugs")
LOCKED = "database is locked"


@dataclass
class Workers:
    """Worker processes started for one test; whatever is left is stopped at teardown."""

    settings: Settings
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        """A ``python -P -m testio_sync.tasks`` child, returned once it holds the worker lock."""
        proc = spawn_worker(self.settings)
        self.started.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no cleanup of any kind runs in the child. Reaped, so it is no zombie."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # The kernel drops the worker's flock with the process; wait for it to show.
        wait_until(lambda: not worker_alive(self.settings.worker_lock_path), what="worker gone")

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self.started.clear()

    def log(self) -> str:
        path = self.settings.home / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""


def wait_until(
    condition: Callable[[], object], *, timeout_s: float = 20.0, poll_s: float = 0.005, what: str
) -> None:
    """Poll ``condition`` (fast: crash moments are short) until true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


# -- reading a store without the models (works on backups too) --------------------------


def connect_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)


def table_count(path: Path, table: str) -> int:
    """Rows in ``table`` of the database at ``path`` (0 while the schema does not exist yet)."""
    if not path.exists():
        return 0
    conn = connect_readonly(path)
    try:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        conn.close()


def ids_in(path: Path) -> dict[str, set[Any]]:
    """Entity ids and ``(kind, name)`` users of the database at ``path``."""
    conn = connect_readonly(path)
    try:
        found: dict[str, set[Any]] = {
            table: {row[0] for row in conn.execute(f'SELECT id FROM "{table}"')}
            for table in ENTITY_TABLES
        }
        found["users"] = set(conn.execute('SELECT kind, name FROM "users"'))
        return found
    finally:
        conn.close()


def store_problems(path: Path) -> list[str]:
    """What is wrong with the file at ``path``: integrity, foreign keys, duplicate rows."""
    conn = connect_readonly(path)
    try:
        problems = []
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            problems.append(f"integrity_check: {verdict}")
        dangling = conn.execute("PRAGMA foreign_key_check").fetchall()
        if dangling:
            problems.append(f"foreign_key_check: {dangling[:5]}")
        for table in (*ENTITY_TABLES, "test_features"):
            dupes = conn.execute(
                f'SELECT id, COUNT(*) FROM "{table}" GROUP BY id HAVING COUNT(*) > 1'
            ).fetchall()
            if dupes:
                problems.append(f"duplicate ids in {table}: {dupes[:5]}")
        users = conn.execute(
            'SELECT kind, name, COUNT(*) FROM "users" GROUP BY kind, name HAVING COUNT(*) > 1'
        ).fetchall()
        if users:
            problems.append(f"duplicate users: {users[:5]}")
        return problems
    finally:
        conn.close()


# -- the same audits on either store, named by the settings ------------------------------


def _pg_query(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    assert settings.database_url is not None
    with psycopg.connect(conninfo(settings.database_url.reveal()), autocommit=True) as conn:
        try:
            return list(conn.execute(sql).fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def store_count(settings: Settings, table: str) -> int:
    """Rows in ``table`` of the settings' store, SQLite file or PostgreSQL schema."""
    if settings.database_url is None:
        return table_count(settings.db_path, table)
    rows = _pg_query(settings, f'SELECT COUNT(*) FROM "{table}"')
    return int(rows[0][0]) if rows else 0


def store_ids(settings: Settings) -> dict[str, set[Any]]:
    """``ids_in`` of the settings' store."""
    if settings.database_url is None:
        return ids_in(settings.db_path)
    found: dict[str, set[Any]] = {
        table: {row[0] for row in _pg_query(settings, f'SELECT id FROM "{table}"')}
        for table in ENTITY_TABLES
    }
    found["users"] = set(_pg_query(settings, 'SELECT kind, name FROM "users"'))
    return found


def problems_in(settings: Settings) -> list[str]:
    """``store_problems`` of the settings' store (PostgreSQL enforces keys itself)."""
    if settings.database_url is None:
        return store_problems(settings.db_path)
    problems = []
    for table in (*ENTITY_TABLES, "test_features"):
        dupes = _pg_query(
            settings, f'SELECT id, COUNT(*) FROM "{table}" GROUP BY id HAVING COUNT(*) > 1'
        )
        if dupes:
            problems.append(f"duplicate ids in {table}: {dupes[:5]}")
    return problems


# -- what a correct store holds ---------------------------------------------------------


def expected_ids(sim: Simulator, *, without_tests: Iterable[int] = ()) -> dict[str, set[Any]]:
    """The simulator's world as ids and users, minus some tests (and their bugs and users)."""
    left_out = set(without_tests)
    with sim.lock:
        world = sim.world
        tests = {tid: t for tid, t in world.tests.items() if tid not in left_out}
        bugs = {bid: b for bid, b in world.bugs.items() if b.test_id in tests}
        users = {("tester", b.author) for b in bugs.values()}
        users |= {("customer", t.created_by) for t in tests.values() if t.created_by}
        users |= {("customer", t.submitted_by) for t in tests.values() if t.submitted_by}
        return {
            "products": set(world.products),
            "features": set(world.features),
            "tests": set(tests),
            "bugs": set(bugs),
            "users": users,
        }


def differences(got: dict[str, set[Any]], want: dict[str, set[Any]]) -> dict[str, Any]:
    """Per kind, how many ids are missing and extra, with a few examples; empty when equal."""
    diff: dict[str, Any] = {}
    for kind in want:
        missing, extra = want[kind] - got[kind], got[kind] - want[kind]
        if missing or extra:
            diff[kind] = {
                "missing": len(missing),
                "extra": len(extra),
                "examples": sorted(missing, key=str)[:3] + sorted(extra, key=str)[:3],
            }
    return diff


def archived_test_in_the_middle(sim: Simulator) -> int:
    """An archived test some way down the longest product's list (a page of its own)."""
    with sim.lock:
        world = sim.world
        longest = max(world.products, key=lambda pid: len(world.ordered_test_ids(pid)))
        ordered = world.ordered_test_ids(longest)
        archived = [tid for tid in ordered if world.tests[tid].status == "archived"]
        return archived[len(archived) // 2]
