"""Workers on a shared queue are seen from any host, by their heartbeats in the queue.

"Another host" is a second data directory of one PostgreSQL mirror: the worker slots
of the first are files the second cannot see, as on another machine, so only the
worker's heartbeat in the shared queue (Redis or PostgreSQL) shows it there. Real
worker processes, real servers, a real simulator.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from faults.support import Workers, wait_until
from mcp import Client
from queue_servers import queue_url_for
from store_servers import postgres_store
from testsupport import make_settings
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.mcp_server import build_server
from testio_sync.mcp_server.server import WorkerKeeper
from testio_sync.service import SyncService
from testio_sync.settings import Secret, Settings
from testio_sync.simulator import Simulator
from testio_sync.sync import runs
from testio_sync.tasks.backends import server_time
from testio_sync.tasks.liveness import worker_alive
from testio_sync.tasks.presence import ALIVE_WITHIN_S, FORGET_AFTER_S, PREFIX, live_workers
from testio_sync.tasks.queue import huey

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=["redis", "postgresql"])
def shared_url(request: pytest.FixtureRequest):
    with queue_url_for(request.param) as url:
        yield url


@pytest.fixture
def store_url():
    with postgres_store() as url:
        yield url


def beats() -> dict[str, dict]:
    return {
        key: json.loads(raw)
        for key, raw in huey.storage.result_items().items()
        if key.startswith(PREFIX)
    }


def rewrite_beat(key: str, **changes: object) -> None:
    record = {**beats()[key], **changes}
    huey.storage.put_data(key, json.dumps(record).encode())


def pids_seen(service: SyncService) -> list[int]:
    return [w["pid"] for w in service.status()["workers"]]


async def server_sync_and_status(settings: Settings) -> tuple[dict, dict]:
    """``sync_data`` then ``get_sync_status`` on a server that starts no worker."""
    server = build_server(settings, worker=WorkerKeeper(settings, enabled=False))
    async with Client(server) as client:
        synced = await client.call_tool("sync_data", {})
        status = await client.call_tool("get_sync_status", {})
    assert not synced.is_error and not status.is_error, synced.content
    return dict(synced.structured_content or {}), dict(status.structured_content or {})


def two_directories(
    tmp_path: Path, base_url: str, store_url: str, shared_url: str
) -> tuple[Settings, Settings]:
    """One mirror and queue, two data directories: the worker's, and the "other host"."""
    here = make_settings(
        tmp_path / "worker-host",
        base_url,
        database_url=Secret(store_url),
        queue_url=Secret(shared_url),
        refresh_interval_s=0,
    )
    return here, replace(here, home=tmp_path / "other-host")


def test_a_worker_elsewhere_is_listed_and_runs_the_syncs_asked_here(
    tmp_path: Path, tiny_server: tuple[Simulator, str], store_url: str, shared_url: str
) -> None:
    sim, base_url = tiny_server
    there, here = two_directories(tmp_path, base_url, store_url, shared_url)
    workers = Workers(there)
    try:
        proc = workers.start()
        service = SyncService(here)
        assert not worker_alive(here.worker_lock_path)  # no slot of it here
        wait_until(lambda: pids_seen(service) == [proc.pid], what="the worker's heartbeat")
        status = service.status()
        [worker] = status["workers"]
        assert worker["host"] == socket.gethostname() and worker["beat_age_seconds"] < 30
        assert status["worker_alive"] is True and status["worker_pids"] == [proc.pid]
        text = CliRunner(env=here.to_env()).invoke(cli.app, ["status"]).stdout
        assert f"Worker: running (PID {proc.pid})" in text
        assert f"  PID {proc.pid} on {socket.gethostname()}, last beat " in text
        shown = CliRunner(env=here.to_env()).invoke(cli.app, ["status", "--json"]).stdout
        assert [w["pid"] for w in json.loads(shown)["workers"]] == [proc.pid]

        # A ``--no-worker`` server here: sync_data enqueues for that worker, not in-process.
        synced, shown_status = asyncio.run(server_sync_and_status(here))
        assert synced["status"] == "succeeded", synced
        row = runs.get_run(synced["run_id"])
        assert not row.in_process and row.owner_pid == proc.pid
        truth = sim.truth()
        assert (synced["products_synced"], synced["tests_discovered"]) == (
            truth["products"],
            truth["tests"],
        )
        assert [(w["host"], w["pid"]) for w in shown_status["workers"]] == [
            (socket.gethostname(), proc.pid)
        ]

        # A clean stop deletes its key: nobody waits out the bound.
        [key] = beats()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        assert key not in beats()
        assert pids_seen(service) == [] and not service.worker_alive()
    finally:
        workers.stop_all()


def test_a_silent_or_dead_worker_is_dropped_and_another_hosts_worker_counts(
    tmp_path: Path, tiny_server: tuple[Simulator, str], store_url: str, shared_url: str
) -> None:
    there, here = two_directories(tmp_path, tiny_server[1], store_url, shared_url)
    workers = Workers(there)
    try:
        proc = workers.start()
        service = SyncService(here)
        wait_until(lambda: pids_seen(service) == [proc.pid], what="the worker's heartbeat")
        [key] = beats()

        # Stopped: its process lives but it beats no more; past three beats it is gone.
        proc.send_signal(signal.SIGSTOP)
        rewrite_beat(key, beat_at=server_time(huey.storage) - ALIVE_WITHIN_S - 1)
        assert pids_seen(service) == [] and not service.worker_alive()
        proc.send_signal(signal.SIGCONT)
        # Its next beat comes within BEAT_S; stand in for it rather than wait.
        rewrite_beat(key, beat_at=server_time(huey.storage))
        assert pids_seen(service) == [proc.pid]

        # A worker on another host: its PID means nothing here, only its beat's age counts.
        record = beats()[key]
        elsewhere = f"{PREFIX}elsewhere.example:999999:abcd"
        huey.storage.put_data(
            elsewhere, json.dumps({**record, "host": "elsewhere.example", "pid": 999999}).encode()
        )
        assert [(w["host"], w["pid"]) for w in service.status()["workers"]] == [
            ("elsewhere.example", 999999),
            (socket.gethostname(), proc.pid),
        ]

        # Killed here: gone at once (its PID is dead), though its key stays a while.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert [w["pid"] for w in live_workers()] == [999999]
        assert key in beats()
        # A key silent past the forget bound is deleted by the next reader.
        rewrite_beat(elsewhere, beat_at=server_time(huey.storage) - FORGET_AFTER_S - 1)
        assert live_workers() == [] and elsewhere not in beats()
    finally:
        workers.stop_all()
