"""The CLI as real processes: ``python -m testio_sync``, the console script, signals, the worker.

Each child gets its settings through ``TESTIO_*`` variables, as a user's shell would
give them, and talks to a simulator served by this test process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TOKEN, make_settings
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store import queries
from testio_sync.store.db import open_store
from testio_sync.sync import runs
from testio_sync.sync.lock import SyncLock
from testio_sync.sync.types import SyncResult, SyncStatus
from testio_sync.tasks.liveness import worker_alive

SCRIPT = Path(sys.executable).with_name("testio-sync")


@pytest.fixture
def settings(home: Path, tiny_server: tuple[Simulator, str]) -> Settings:
    """Settings with a long lock wait: tests here hold the lock while a child starts."""
    return make_settings(home, tiny_server[1], lock_timeout_s=60.0)


@pytest.fixture
def worker(settings: Settings, consumer: object) -> object:
    """The conftest ``consumer``, once it counts as alive (its start-up hook takes the lock)."""
    wait_until(lambda: worker_alive(settings.worker_lock_path))
    return consumer


@pytest.fixture
def slow_server() -> Iterator[tuple[Simulator, str]]:
    """A simulator that answers every request after 0.8 s, so a sync takes seconds."""
    sim = Simulator(scale="tiny", seed=3, token=TOKEN, latency_ms=800)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def child_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}


def start_cli(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "testio_sync", *args],
        env=child_env(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    """Read the child's stdout line by line until a line contains ``marker``."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"{marker!r} never printed; stdout was {''.join(seen)!r}")


def running_run(settings: Settings) -> str | None:
    """The id of a run that has started a phase, if any."""
    if not settings.db_path.exists():
        return None
    open_store(settings)
    for row in runs.active_runs():
        if row.status == SyncStatus.RUNNING.value:
            return str(row.run_id)
    return None


def test_python_dash_m_runs_a_sync_and_prints_json(settings: Settings) -> None:
    """``python -m testio_sync sync --json`` in a child process: exit 0, a SyncResult on stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "testio_sync", "sync", "--json"],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == set(SyncResult(run_id="x", status=SyncStatus.SUCCEEDED).to_dict())
    assert data["status"] == "succeeded"
    open_store(settings)
    assert queries.entity_counts()["tests"] > 0


def test_console_script_reports_bad_input_in_one_line_with_exit_2(settings: Settings) -> None:
    """The installed ``testio-sync`` script: a bad ``--since`` is one error line, exit 2."""
    proc = subprocess.run(
        [str(SCRIPT), "sync", "--since", "tomorrow"],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == "Error: --since: 'tomorrow' is in the future.\n"
    assert proc.stdout == ""


def test_ctrl_c_stops_an_in_process_sync_and_records_it_failed(
    home: Path, slow_server: tuple[Simulator, str]
) -> None:
    """SIGINT during a run in the CLI's own process: it stops between requests, exit 130."""
    settings = make_settings(home, slow_server[1])
    proc = start_cli(settings, "sync", "--with-bugs")
    try:
        wait_until(lambda: running_run(settings) is not None, timeout_s=60)
        run_id = running_run(settings)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 130, err
    assert f"Stopping sync run {run_id}" in err
    assert "Sync failed after " in out
    assert runs.get_run(run_id).status == SyncStatus.FAILED.value


def test_cli_attaches_to_a_worker_run_already_in_progress(
    settings: Settings, worker: object
) -> None:
    """A covering run is in progress in the worker: the CLI joins it and shows its result."""
    settings.ensure_home()
    lock = SyncLock(settings.lock_path, run_id="test-holder", timeout_s=0)
    lock.acquire_blocking()  # the worker's run starts, then waits here for the lock
    try:
        first = SyncService(settings).execute_sync()
        wait_until(lambda: first.poll().status == SyncStatus.RUNNING)
        status = CliRunner(env=settings.to_env()).invoke(cli.app, ["status"])
        assert f"  {first.run_id}  running " in status.stdout
        assert f"Sync lock: held by PID {os.getpid()} for run test-holder" in status.stdout
        proc = start_cli(settings, "sync")
        line = read_until(proc, "Attached to sync run")
    finally:
        lock.release_blocking()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert line.strip() == f"Attached to sync run {first.run_id} already in progress"
    assert f"Run {first.run_id} " in out
    assert "Sync completed in " in out


def test_ctrl_c_while_waiting_on_the_worker_leaves_the_run_going(
    settings: Settings, worker: object
) -> None:
    """SIGINT only ends the wait: exit 130, the worker still finishes the run."""
    settings.ensure_home()
    lock = SyncLock(settings.lock_path, run_id="test-holder", timeout_s=0)
    lock.acquire_blocking()
    try:
        proc = start_cli(settings, "sync")
        wait_until(lambda: running_run(settings) is not None)
        run_id = running_run(settings)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        lock.release_blocking()
    assert proc.returncode == 130, err
    assert err.strip().endswith(
        f"Stopped waiting; run {run_id} goes on in the worker. "
        f"Follow it with `testio-sync status {run_id}`."
    )
    result = SyncService(settings).handle(run_id).wait(timeout_s=60)
    assert result.status == SyncStatus.SUCCEEDED


def test_worker_command_runs_queued_syncs_and_stops_on_ctrl_c(
    settings: Settings, tmp_path: Path
) -> None:
    """``testio-sync worker`` in a child: syncs go to it, status sees it, SIGINT ends it (0)."""
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "testio_sync", "worker"],
            env=child_env(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        wait_until(lambda: worker_alive(settings.worker_lock_path))
        runner = CliRunner(env=settings.to_env())
        result = runner.invoke(cli.app, ["sync"])
        assert result.exit_code == 0, result.output
        assert "No worker is running" not in result.output
        status = runner.invoke(cli.app, ["status"])
        assert f"Worker: running (PID {proc.pid})" in status.stdout
        second = runner.invoke(cli.app, ["worker"])
        assert second.exit_code == 1
        assert second.stderr.startswith("Error: a worker already runs for ")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not worker_alive(settings.worker_lock_path)
    assert "Worker running for " in (tmp_path / "worker.log").read_text()


def test_simulate_command_serves_an_api_the_cli_can_sync_from(home: Path) -> None:
    """``testio-sync simulate --port 0`` prints its URL; a sync against it succeeds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_sync", "simulate", "--port", "0", "--scale", "tiny"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = read_until(proc, "Simulator listening on ")
        base_url = line.strip().removeprefix("Simulator listening on ")
        settings = Settings(home=home, api_base_url=base_url, api_token=None)
        env = {**settings.to_env(), "TESTIO_CUSTOMER_API_TOKEN": "demo-token"}
        result = CliRunner(env=env).invoke(cli.app, ["sync", "--quiet"])
        assert result.exit_code == 0, result.output
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        proc.kill()
        proc.communicate()
