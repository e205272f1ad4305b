"""``status`` and ``get_sync_status`` show a lock holder that went silent, on each store.

The holder is a real process (``lock_holders``) that heartbeats every 600 s, so it stays
quiet for the test; its last heartbeat is moved back in its own record (the file and its
mtime, or the ``sync_lock`` row by the server's clock) to play minutes or hours of silence.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import pytest
from lock_holders import held_elsewhere, let_go
from mcp import Client
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.mcp_server import build_server
from testio_sync.settings import Settings
from testio_sync.store.db import open_store
from testio_sync.sync.lock_record import guarded, iso, read_record, write_record

pytestmark = pytest.mark.usefixtures("store_backend")


def backdate(settings: Settings, seconds: float) -> None:
    """Make the holder's last heartbeat ``seconds`` old, as if it had been silent since."""
    if settings.database_url is None:
        then = time.time() - seconds

        def rewrite(fd: int) -> None:
            record = read_record(fd).record
            assert record is not None
            write_record(fd, {**record, "heartbeat_at": iso(then)})

        guarded(settings.lock_path, rewrite)
        os.utime(settings.lock_path, (then, then))  # the mtime counts as a heartbeat too
        return
    import psycopg

    from testio_sync.store.postgres import conninfo

    with psycopg.connect(conninfo(settings.database_url.reveal()), autocommit=True) as conn:
        changed = conn.execute(
            'UPDATE "sync_lock" SET "heartbeat_at" = now() - make_interval(secs => %s)',
            [seconds],
        ).rowcount
    assert changed == 1


def status_of(settings: Settings) -> tuple[dict[str, Any], list[str]]:
    runner = CliRunner(env=settings.to_env())
    as_json = runner.invoke(cli.app, ["status", "--json"])
    as_text = runner.invoke(cli.app, ["status"])
    assert as_json.exit_code == 0 and as_text.exit_code == 0, as_json.output + as_text.output
    return json.loads(as_json.stdout), as_text.stdout.splitlines()


async def mcp_holder(settings: Settings) -> dict[str, Any] | None:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("get_sync_status", {})
    assert not result.is_error, result.content
    return (result.structured_content or {})["lock_holder"]


def lock_lines(lines: list[str]) -> list[str]:
    """The ``Sync lock:`` line and the indented lines under it."""
    at = next(i for i, line in enumerate(lines) if line.startswith("Sync lock:"))
    end = at + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    return lines[at:end]


def test_a_silent_holder_is_shown_silent_then_hung(settings: Settings) -> None:
    open_store(settings)
    with held_elsewhere(settings, "run-quiet") as proc:
        data, lines = status_of(settings)
        holder = data["lock_holder"]
        assert (holder["pid"], holder["run_id"]) == (proc.pid, "run-quiet")
        assert holder["silent_seconds"] < 30 and holder["heartbeat_overdue"] is False
        assert holder["silence"] is None and holder["hung"] is False
        assert len(lock_lines(lines)) == 1

        backdate(settings, 100)  # under the overdue bound (4 heartbeats, 2 min): quiet
        data, lines = status_of(settings)
        assert data["lock_holder"]["silence"] is None and len(lock_lines(lines)) == 1

        backdate(settings, 7 * 60)
        data, lines = status_of(settings)
        holder = data["lock_holder"]
        assert holder["pid"] == proc.pid and holder["heartbeat_overdue"] is True
        assert 7 * 60 <= holder["silent_seconds"] < 8 * 60
        assert holder["hung"] is False and holder["hung_after_seconds"] == 3600
        said = "no heartbeat for 7 min; treated as hung after 1 h"
        assert holder["silence"] == said
        shown = lock_lines(lines)
        assert shown[0].startswith(f"Sync lock: held by PID {proc.pid}") and "run-quiet" in shown[0]
        assert shown[1:] == [f"  {said}"]
        small = asyncio.run(mcp_holder(settings))
        assert small is not None and small["silence"] == said and small["pid"] == proc.pid
        assert set(small) <= {
            "pid",
            "host",
            "run_id",
            "started_at",
            "heartbeat_at",
            "silent_seconds",
            "silence",
        }

        backdate(settings, 2 * 3600 + 60)  # past the bound: hung, still holding until taken
        data, lines = status_of(settings)
        holder = data["lock_holder"]
        assert holder["pid"] == proc.pid and holder["hung"] is True
        said = "no heartbeat for 2 h; hung (limit 1 h): the next sync takes the lock over"
        assert holder["silence"] == said
        assert lock_lines(lines)[1:] == [f"  {said}"]
        assert let_go(proc) in ("released", "lost")
    data, lines = status_of(settings)
    assert data["lock_holder"] is None and "Sync lock: free" in lines


def test_a_dead_holder_shows_the_lock_free(settings: Settings) -> None:
    open_store(settings)
    with held_elsewhere(settings, "run-killed") as proc:
        backdate(settings, 7 * 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    deadline = time.monotonic() + 10  # PostgreSQL ends the session a moment later
    while (data := status_of(settings)[0])["lock_holder"] is not None:
        assert time.monotonic() < deadline, data["lock_holder"]
        time.sleep(0.05)
    assert asyncio.run(mcp_holder(settings)) is None
