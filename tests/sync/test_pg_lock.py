"""The sync lock on a real PostgreSQL store, held by real processes.

Each test gets a schema of its own (``postgres_store``); holders are separate
processes (``pg_lock_holder.py``), killed or stopped to play a crash or a hang.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import lock_holders
import pytest
from mcp import Client
from store_servers import postgres_store
from testsupport import make_settings

from testio_sync.dates import utc_now
from testio_sync.errors import SyncLockedError
from testio_sync.mcp_server import build_server
from testio_sync.settings import Secret, Settings
from testio_sync.store.db import open_store
from testio_sync.store.models import SyncEvent, database
from testio_sync.sync import runs
from testio_sync.sync.pg_lock import PostgresSyncLock, describe_pg_holder, lock_holder, sync_lock
from testio_sync.tasks.backends import queue_name

HOLDER = Path(__file__).with_name("pg_lock_holder.py")


@pytest.fixture
def store_url() -> Iterator[str]:
    with postgres_store() as url:
        yield url


@pytest.fixture
def pg_settings(store_url: str, tmp_path: Path) -> Settings:
    settings = make_settings(
        tmp_path / "home", "http://127.0.0.1:9", database_url=Secret(store_url)
    )
    open_store(settings)
    return settings


def holder_process(
    url: str, run_id: str, heartbeat_s: float = 600.0
) -> AbstractContextManager[subprocess.Popen[str]]:
    """A separate process holding the lock; killed at the end if still running."""
    return lock_holders.holder_process(HOLDER, url, run_id, heartbeat_s)


def test_a_second_process_waits_then_names_the_holder_by_pid_and_host(
    pg_settings: Settings, store_url: str
) -> None:
    with holder_process(store_url, "run-first") as proc:
        holder = lock_holder(pg_settings)
        assert holder is not None
        assert (holder["pid"], holder["host"], holder["run_id"]) == (
            proc.pid,
            socket.gethostname(),
            "run-first",
        )
        assert holder["backend_pid"] and holder["acquired_at"] and holder["heartbeat_at"]
        second = PostgresSyncLock(store_url, run_id="run-second", timeout_s=0.3, poll_s=0.05)
        with pytest.raises(SyncLockedError) as info:
            second.acquire_blocking()
        assert f"PID {proc.pid} on {socket.gethostname()}" in str(info.value)
        assert "run run-first" in str(info.value)
        assert info.value.holder["run_id"] == "run-first"
        assert "secret" not in str(info.value)
        proc.stdin.close()  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == "released"  # type: ignore[union-attr]
    assert lock_holder(pg_settings, live_only=False) is None
    with sync_lock(pg_settings, run_id="run-third", timeout_s=0) as third:
        assert isinstance(third, PostgresSyncLock)
        assert (lock_holder(pg_settings) or {})["run_id"] == "run-third"
    assert lock_holder(pg_settings, live_only=False) is None


def test_sigkill_of_the_holder_frees_the_lock_at_once(
    pg_settings: Settings, store_url: str
) -> None:
    with holder_process(store_url, "run-crashed") as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # The server ends the session when the socket closes: no bound to wait out.
    deadline = time.monotonic() + 5
    while (held := describe_pg_holder()) and held["stale"] is None:
        assert time.monotonic() < deadline, held
        time.sleep(0.02)
    assert held is not None and held["run_id"] == "run-crashed"
    assert held["stale"] == "holder is dead (its database session ended)"
    assert lock_holder(pg_settings) is None  # status shows the lock free
    started = time.monotonic()
    lock = PostgresSyncLock(store_url, run_id="run-next", timeout_s=0)
    assert lock.acquire_blocking() == []
    try:
        assert time.monotonic() - started < 2
        assert (lock_holder(pg_settings) or {})["run_id"] == "run-next"
    finally:
        lock.release_blocking()


def test_a_hung_holder_is_ended_after_the_bound_and_learns_it_lost(
    pg_settings: Settings, store_url: str
) -> None:
    """SIGSTOP: the session lives on; a waiter ends it once the heartbeat is 1.5 s old."""
    with holder_process(store_url, "run-hung", heartbeat_s=0.2) as proc:
        proc.send_signal(signal.SIGSTOP)
        waiter = PostgresSyncLock(
            store_url, run_id="run-next", timeout_s=20, stale_after_s=1.5, heartbeat_s=0.5
        )
        started = time.monotonic()
        warnings = waiter.acquire_blocking()
        try:
            waited = time.monotonic() - started
            assert 1.0 < waited < 10, waited
            assert len(warnings) == 1 and "hung sync lock holder" in warnings[0]
            assert f"PID {proc.pid}" in warnings[0] and "no heartbeat for" in warnings[0]
            holder = lock_holder(pg_settings) or {}
            assert holder["run_id"] == "run-next" and holder["took_over"] == warnings[0]
            proc.send_signal(signal.SIGCONT)
            proc.stdin.close()  # type: ignore[union-attr]
            assert proc.stdout.readline().strip() == "lost"  # type: ignore[union-attr]
            assert (lock_holder(pg_settings) or {})["run_id"] == "run-next"  # left untouched
        finally:
            waiter.release_blocking()


def test_a_stopped_holder_within_the_bound_keeps_the_lock(
    pg_settings: Settings, store_url: str
) -> None:
    with holder_process(store_url, "run-slow", heartbeat_s=0.2) as proc:
        proc.send_signal(signal.SIGSTOP)
        waiter = PostgresSyncLock(store_url, run_id="run-next", timeout_s=1.0, stale_after_s=60)
        with pytest.raises(SyncLockedError):
            waiter.acquire_blocking()
        assert (lock_holder(pg_settings) or {})["run_id"] == "run-slow"
        proc.send_signal(signal.SIGCONT)


def test_status_json_shows_the_holder_pid_and_host(pg_settings: Settings, store_url: str) -> None:
    # The CLI's mirror check still looks for the SQLite file, even on a PostgreSQL store.
    pg_settings.ensure_home()
    pg_settings.db_path.touch()
    with holder_process(store_url, "run-shown") as proc:
        answer = subprocess.run(
            [sys.executable, "-m", "testio_sync", "status", "--json"],
            env={**os.environ, **pg_settings.to_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert answer.returncode == 0, answer.stderr
        holder = json.loads(answer.stdout)["lock_holder"]
        assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()
        assert holder["run_id"] == "run-shown" and holder["store"] == "postgresql"
        text = subprocess.run(
            [sys.executable, "-m", "testio_sync", "status"],
            env={**os.environ, **pg_settings.to_env()},
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert f"held by PID {proc.pid} on {socket.gethostname()}" in text
        shown = asyncio.run(mcp_status(pg_settings))["lock_holder"]
        assert (shown["pid"], shown["host"], shown["run_id"]) == (
            proc.pid,
            socket.gethostname(),
            "run-shown",
        )


async def mcp_status(settings: Settings) -> dict[str, Any]:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("get_sync_status", {})
    assert not result.is_error, result.content
    return dict(result.structured_content or {})


def running_row(run_id: str, *, host: str, started_ago_s: float, pid: int = 1) -> None:
    now = utc_now()
    with database.connection_context():
        SyncEvent.create(
            run_id=run_id,
            trigger="cli",
            phases=["products"],
            scope={},
            options={},
            status="running",
            enqueued_at=now - timedelta(seconds=started_ago_s + 1),
            started_at=now - timedelta(seconds=started_ago_s),
            owner_pid=pid,
            owner_host=host,
        )


def test_another_hosts_run_is_judged_by_the_lock_not_by_a_local_pid(
    pg_settings: Settings, store_url: str
) -> None:
    """PID 1 lives here, but means nothing for a run of another host."""
    with holder_process(store_url, "run-holding") as proc:
        running_row("run-holding", host="elsewhere", started_ago_s=900)
        running_row("run-waiting", host="elsewhere", started_ago_s=5)
        running_row("run-silent", host="elsewhere", started_ago_s=900)
        assert runs.mark_abandoned(now=utc_now()) == ["run-silent"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 5
    while not runs.mark_abandoned(now=utc_now()):
        assert time.monotonic() < deadline, "the killed holder's run was never abandoned"
        time.sleep(0.02)
    assert runs.get_run("run-holding").status == "abandoned"
    assert runs.get_run("run-waiting").status == "running"
    later = utc_now() + timedelta(seconds=600)
    assert runs.mark_abandoned(now=later) == ["run-waiting"]


def test_workers_of_one_database_share_a_queue_name_from_any_host(tmp_path: Path) -> None:
    """The queue is named by the database (password left out), not by host and directory."""
    base = "postgresql://u:{}@db.example:5432/mirror"
    queue = Secret("redis://127.0.0.1:6379/0")

    def name(home: str, url: str) -> str:
        settings = make_settings(tmp_path / home, "http://x", database_url=Secret(url))
        return queue_name(replace(settings, queue_url=queue))

    first = name("a", base.format("p1"))
    assert first == name("b", base.format("p2"))
    assert first != name("c", base.format("p1") + "2")
