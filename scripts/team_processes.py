"""Processes of a team deployment on loopback, for ``load_team.py`` and ``failover.py``.

``Team`` starts the simulator, workers, HTTP MCP servers and CLI commands as real
child processes (each in its own session, its output in a log file under the run's
folder) and stops every one of them on exit, also on Ctrl-C, SIGTERM or an error:
SIGTERM to each process group first, SIGKILL to whatever is left after a grace period.
Every process gets the same mirror variables, including ``TESTIO_SYNC_DATABASE_URL``
when one is given, so the scripts run unchanged on any store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from testio_sync.errors import TestioSyncError
from testio_sync.settings import Secret, Settings, redact_url
from testio_sync.tasks.liveness import worker_pids

HOST = "127.0.0.1"
API_TOKEN = "team-api-token-0123456789"
SERVER_TOKEN = "team-server-token-" + "x" * 24
CLI = [sys.executable, "-m", "testio_sync"]
DEFAULT_REDIS_QUEUE = "redis://127.0.0.1:6379/15"
STOP_GRACE_S = 10.0


class Interrupted(Exception):
    """SIGTERM or SIGINT reached the script: stop what it started and exit 130."""


def raise_on_signals() -> None:
    """Turn SIGTERM (and SIGINT) into an exception, so ``finally`` blocks clean up."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Any, *, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Team:
    """One mirror (a data directory, a queue, maybe a database) and the processes on it."""

    home: Path
    queue_url: str | None
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    api_base_url: str = ""
    started: list[Started] = field(default_factory=list)

    # -- environment -------------------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        """The variables every process of this mirror gets (nothing inherited that matters)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TESTIO_", "HUEY_"))
        }
        env |= {
            "TESTIO_SYNC_HOME": str(self.home),
            "TESTIO_CUSTOMER_API_BASE_URL": self.api_base_url,
            "TESTIO_CUSTOMER_API_TOKEN": API_TOKEN,
            "TESTIO_REFRESH_INTERVAL_SECONDS": "0",  # no background sync: only ours run
            "TESTIO_SYNC_QUEUE_URL": self.queue_url or "",
            "TESTIO_SYNC_SERVER_TOKENS": SERVER_TOKEN,
            "TESTIO_SYNC_SERVER_TOKENS_FILE": "",
            "TESTIO_SYNC_ALLOWED_HOSTS": "",
            "TESTIO_SYNC_ALLOWED_ORIGINS": "",
        }
        if self.database_url:
            env["TESTIO_SYNC_DATABASE_URL"] = self.database_url
        return env | self.extra_env | overrides

    def settings(self) -> Settings:
        return Settings(
            home=self.home,
            api_base_url=self.api_base_url or "http://127.0.0.1:1",
            api_token=Secret(API_TOKEN),
            queue_url=Secret(self.queue_url) if self.queue_url else None,
        )

    def describe_queue(self) -> str:
        return redact_url(self.queue_url) if self.queue_url else "SQLite queue.db"

    # -- processes ---------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        split_stderr: bool = False,
    ) -> Started:
        """Start ``argv``; its output goes to ``<name>.log`` (stderr to ``.err`` if split)."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.home.parent / f"{name}.log"
        with log.open("ab") as sink, log.with_suffix(".err").open("ab") as errors:
            proc = subprocess.Popen(
                argv,
                env=env or self.env(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=errors if split_stderr else subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C is not theirs: we stop them ourselves
            )
        started = Started(name, proc, log)
        self.started.append(started)
        return started

    def check_alive(self, started: Started) -> None:
        if started.proc.poll() is not None:
            tail = started.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{started.name} exited ({started.proc.returncode}):\n{tail}")

    def start_simulator(self, scale: str, *, latency_ms: float = 0.0) -> str:
        """``testio-sync simulate`` on a free port; returns its API base URL."""
        port = free_port()
        argv = [*CLI, "simulate", "--host", HOST, "--port", str(port), "--scale", scale]
        argv += ["--token", API_TOKEN, "--latency-ms", str(latency_ms)]
        sim = self.spawn("simulator", argv, env=self.env())
        wait_until(
            lambda: self.check_alive(sim) or listening(port), timeout_s=120, what="the simulator"
        )
        self.api_base_url = f"http://{HOST}:{port}/customer/v2"
        return self.api_base_url

    def simulator_truth(self) -> dict[str, Any]:
        """The simulator's own counts (its ``/_simulator/truth``), never our store's."""
        root = self.api_base_url.removesuffix("/customer/v2")
        return dict(get_json(f"{root}/_simulator/truth"))

    def start_workers(self, count: int, env: dict[str, str] | None = None) -> list[Started]:
        """``testio-sync worker`` processes, returned once each holds a worker slot."""
        before = len(worker_pids(self.settings().worker_lock_path))
        workers = []
        for n in range(count):
            worker = self.spawn(f"worker{n + 1}", [*CLI, "worker"], env=env)
            workers.append(worker)
            wait_until(
                lambda w=worker: (
                    self.check_alive(w)
                    or w.proc.pid in worker_pids(self.settings().worker_lock_path)
                ),
                timeout_s=30,
                what=f"worker {n + 1} to start",
            )
        assert len(worker_pids(self.settings().worker_lock_path)) == before + count
        return workers

    def start_server(self, name: str, *, worker: bool = False) -> tuple[Started, str]:
        """``serve --transport http`` with tokens on a free port; returns it and its /mcp URL."""
        port = free_port()
        argv = [*CLI, "serve", "--transport", "http", "--host", HOST, "--port", str(port)]
        server = self.spawn(name, argv if worker else [*argv, "--no-worker"])
        wait_until(
            lambda: self.check_alive(server) or listening(port),
            timeout_s=60,
            what=f"{name} to listen",
        )
        return server, f"http://{HOST}:{port}/mcp"

    def cli(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """One ``testio-sync`` command on this mirror, waited for."""
        return subprocess.run(
            [*CLI, *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def cli_json(self, *args: str, timeout_s: float = 600) -> dict[str, Any]:
        done = self.cli(*args, "--json", timeout_s=timeout_s)
        try:
            return dict(json.loads(done.stdout))
        except ValueError:
            raise RuntimeError(
                f"testio-sync {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
            ) from None

    def stop(self, started: Started, *, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM its process group, then SIGKILL after ``grace_s``."""
        proc = started.proc
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        _signal_group(proc, signal.SIGKILL)  # a child it left behind (none expected)

    def stop_all(self) -> None:
        """Stop every process this team started and their children; empty the queue.

        A server's own worker runs in a session of its own, so it is found as a
        child of the server, not by its process group.
        """
        children = [child for started in self.started for child in _descendants(started.proc)]
        for started in reversed(self.started):
            if started.proc.poll() is None:
                _signal_group(started.proc, signal.SIGTERM)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for started in reversed(self.started):
            with contextlib.suppress(subprocess.TimeoutExpired):
                started.proc.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(started.proc, signal.SIGKILL)
            started.proc.wait(5)
        _, alive = psutil.wait_procs(children, timeout=max(0.1, deadline - time.monotonic()))
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.started.clear()
        try:
            clean_queue(self.settings())
        except TestioSyncError as exc:  # the error that stopped the run matters more
            print(f"Warning: the queue was not cleaned: {exc}", file=sys.stderr)


def _descendants(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return list(psutil.Process(proc.pid).children(recursive=True))
    except psutil.Error:
        return []


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)  # start_new_session: its pid is its group's id


def require_shared_queue(parser: argparse.ArgumentParser, queue_url: str, why: str) -> None:
    """Stop with a usage error (exit 2) unless ``queue_url`` names a shared queue."""
    if not queue_url.startswith(("redis://", "postgresql://", "postgres://")):
        parser.error(f"--queue-url must be a redis:// or postgresql:// URL{why}")


def queue_reachable(queue_url: str) -> bool:
    """Reach the queue's server once, before anything starts; if it cannot be reached
    (or its driver is missing), say why in one line on stderr and return False."""
    from testio_sync.tasks.queue import configure

    try:
        with tempfile.TemporaryDirectory() as home:
            configure(Settings(home=Path(home), queue_url=Secret(queue_url)))
    except TestioSyncError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return False
    return True


def clean_queue(settings: Settings) -> None:
    """Drop this mirror's jobs, schedule and keys from a shared queue (only this mirror's).

    The queue's name holds the host and the data directory, so other mirrors (and
    anything else in that Redis database or PostgreSQL schema) are left untouched.
    """
    if settings.queue_url is None:
        return
    from testio_sync.tasks.queue import configure, huey

    configure(settings)
    huey.storage.flush_all()
    huey.storage.close()


def queue_in_use(settings: Settings) -> int:
    """How many jobs and keys of this mirror the shared queue holds (0 once cleaned)."""
    from testio_sync.tasks.queue import configure, huey

    configure(settings)
    return int(
        huey.storage.queue_size() + huey.storage.schedule_size() + huey.storage.result_store_size()
    )


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--queue-url`` and ``--database-url``: where every process of the run keeps its jobs
    and its mirror (each defaults to its ``TESTIO_SYNC_*`` variable)."""
    parser.add_argument(
        "--queue-url",
        default=os.environ.get("TESTIO_SYNC_QUEUE_URL") or DEFAULT_REDIS_QUEUE,
        help="the shared queue (redis:// or postgresql://); its jobs are deleted after",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TESTIO_SYNC_DATABASE_URL") or None,
        help="passed to every process as TESTIO_SYNC_DATABASE_URL (default: SQLite)",
    )
