"""A queue shared by several workers (Redis, PostgreSQL): settings, errors, taking turns.

Real servers on 127.0.0.1 (skipped with the reason when absent, failed when
``TESTIO_SYNC_REQUIRE_SERVICES=1``), real worker processes, a real simulator.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from faults.support import Workers, wait_until
from queue_servers import queue_url_for
from testsupport import make_settings

from testio_sync import tasks
from testio_sync.service import SyncService
from testio_sync.settings import Secret
from testio_sync.store.db import open_database
from testio_sync.store.models import SyncEvent, database
from testio_sync.sync import runs
from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncScope, SyncStatus
from testio_sync.tasks.liveness import worker_pids

PASSWORD = "pa55-Wd-never-shown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "testio_sync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(params=["redis", "postgresql"])
def shared_url(request: pytest.FixtureRequest):
    with queue_url_for(request.param) as url:
        yield url


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0",  # nothing listens there
        f"postgresql://someone:{PASSWORD}@127.0.0.1:{{port}}/queue",
        f"ftp://someone:{PASSWORD}@127.0.0.1/queue",  # not a queue URL
        f"redis://:{PASSWORD}@127.0.0.1:port/0",  # not a URL
    ],
)
@pytest.mark.parametrize("command", [["worker"], ["status"]])
def test_a_bad_or_unreachable_queue_url_is_one_line_exit_2_without_its_password(
    tmp_path, url, command
):
    env = {
        **make_settings(tmp_path / "home", "http://127.0.0.1:9").to_env(),
        "PATH": "/usr/bin:/bin",
        "TESTIO_SYNC_QUEUE_URL": url.format(port=free_port()),
    }
    if command == ["status"]:  # status reads a mirror: make an empty one first
        open_database(make_settings(tmp_path / "home", "http://127.0.0.1:9").db_path)
        assert (tmp_path / "home" / "cache.db").is_file()
    done = run_cli(command, env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: TESTIO_SYNC_QUEUE_URL"), done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_password_in_a_working_queue_url_shows_nowhere(tmp_path, tiny_server):
    """PostgreSQL here trusts local users, so any password works: a sync runs through it."""
    with queue_url_for("postgresql") as url:
        secret_url = url.replace("postgres@", f"postgres:{PASSWORD}@")
        settings = make_settings(tmp_path / "home", tiny_server[1], queue_url=Secret(secret_url))
        assert PASSWORD not in repr(settings)
        workers = Workers(settings)
        try:
            workers.start()
            env = {**settings.to_env(), "PATH": "/usr/bin:/bin"}
            synced = run_cli(["sync", "--json"], env)
            status = run_cli(["status", "--json"], env)
        finally:
            workers.stop_all()
        assert synced.returncode == 0, synced.stderr
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["queue"] == secret_url.replace(PASSWORD, "***")
        seen = synced.stdout + synced.stderr + status.stdout + status.stderr + workers.log()
        assert PASSWORD not in seen
        assert PASSWORD not in settings.db_path.read_bytes().decode("latin-1")


def test_two_workers_on_a_shared_queue_take_turns_and_requests_still_attach(
    fresh_server, home, shared_url
):
    """Two workers, two runs that do not cover each other, two requests that attach.

    The second worker takes the second job while the first sync runs. The sync
    lock's wait is short (0.5 s) and each sync longer (slow API): a worker that
    waited on the lock instead of putting its job back in the queue would fail it.
    """
    sim, url = fresh_server
    sim.update_faults(latency_ms=250)
    settings = make_settings(
        home, url, queue_url=Secret(shared_url), lock_timeout_s=0.5, refresh_interval_s=0
    )
    service = SyncService(settings)
    one = sorted(sim.world.products)[0]
    requests = [
        {"scope": SyncScope(product_ids=(one,))},
        {"phases": [*DEFAULT_PHASES, SyncPhase.BUGS]},  # not covered by the first
        {},  # covered by the second
        {"scope": SyncScope(product_ids=(one,))},  # covered by the first or the second
    ]
    workers = Workers(settings)
    try:
        workers.start()
        workers.start()
        wait_until(lambda: len(worker_pids(settings.worker_lock_path)) == 2, what="two workers")
        assert service.worker_alive()
        assert sorted(service.status()["worker_pids"]) == sorted(p.pid for p in workers.started)
        handles = [service.execute_sync(**asked) for asked in requests]
        results = [h.wait(120) for h in handles]
    finally:
        workers.stop_all()
    assert [r.status for r in results] == [SyncStatus.SUCCEEDED] * len(requests), [
        r.errors for r in results
    ]
    assert [h.attached for h in handles] == [False, False, True, True]
    run_ids = {h.run_id for h in handles}
    assert len(run_ids) == 2
    for handle, asked in zip(handles, requests, strict=True):
        assert runs.request_of(runs.get_run(handle.run_id)).covers(service.build_request(**asked))
    with database.connection_context():
        rows = list(SyncEvent.select().order_by(SyncEvent.started_at))
    assert {r.run_id for r in rows} == run_ids
    assert all(not r.in_process for r in rows)
    for earlier, later in itertools.pairwise(rows):
        assert earlier.finished_at <= later.started_at  # one at a time
    assert "another worker's sync runs" in workers.log()  # the second job really waited


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"])
def test_the_periodic_check_enqueues_one_sync_per_interval_however_many_workers_ask(
    home, tiny_server, backend
):
    """Eight workers' periodic checks at one moment: one run. A worker whose store shows
    no run (it was lost) still does not enqueue a second in that interval; the next does."""
    with queue_url_for(backend) as url:
        settings = make_settings(
            home, tiny_server[1], queue_url=Secret(url) if url else None, refresh_interval_s=600
        )
        SyncService(settings)  # opens the store and points the queue at the backend
        interval = settings.refresh_interval_s
        now = datetime.fromtimestamp(datetime.now(UTC).timestamp() // interval * interval + 1, UTC)
        found: list[str | None] = []
        barrier = threading.Barrier(8)

        def check() -> None:
            barrier.wait()
            found.append(tasks.check_background_sync(settings, now=now))

        threads = [threading.Thread(target=check) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len([r for r in found if r]) == 1, found
        with database.connection_context():
            SyncEvent.delete().execute()  # the store forgets the run
        assert tasks.check_background_sync(settings, now=now + timedelta(seconds=60)) is None
        later = now + timedelta(seconds=interval)
        assert tasks.check_background_sync(settings, now=later) is not None


def test_importing_the_queue_creates_nothing_on_its_server(tmp_path, shared_url):
    """As with ``queue.db``: tables (PostgreSQL) or keys (Redis) appear on first use only."""
    env = {"TESTIO_SYNC_HOME": str(tmp_path / "home"), "TESTIO_SYNC_QUEUE_URL": shared_url}
    code = "import testio_sync.tasks as t; print(type(t.huey).__name__)"
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    expected = "RedisHuey" if shared_url.startswith("redis") else "PostgresHuey"
    assert done.stdout.strip() == expected
    assert not (tmp_path / "home").exists()
    assert server_objects(shared_url) == []
    used = "from testio_sync.tasks.queue import claim_once; claim_once('k')"
    done = subprocess.run(
        [sys.executable, "-P", "-c", used], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert server_objects(shared_url) != []


def server_objects(url: str) -> list[str]:
    """The Redis keys (but the test's own marker) or the PostgreSQL tables at ``url``."""
    if url.startswith("redis"):
        import redis

        with redis.Redis.from_url(url) as client:
            return sorted(k.decode() for k in client.scan_iter() if k != b"testio-sync-test")
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select tablename from pg_tables where schemaname = 'public' order by 1"
        ).fetchall()
    return [r[0] for r in rows]


def test_mirrors_sharing_one_queue_server_each_read_their_own_jobs(tmp_path, tiny_server):
    """A worker of another data directory must not take (and drop) this mirror's job."""
    from testio_sync.tasks.queue import configure

    with queue_url_for("redis") as url:
        mine = make_settings(tmp_path / "mine", tiny_server[1], queue_url=Secret(url))
        theirs = make_settings(tmp_path / "theirs", tiny_server[1], queue_url=Secret(url))
        service = SyncService(mine)
        run_id, _ = tasks.enqueue_run(service.build_request(), mine)
        assert tasks.sync.pending_run_ids() == {run_id}
        configure(theirs)
        assert tasks.sync.pending_run_ids() == set()
        configure(mine)
        assert tasks.sync.pending_run_ids() == {run_id}


def test_testio_sync_worker_starts_a_second_worker_on_a_shared_queue(tmp_path, tiny_server):
    """A second ``testio-sync worker`` joins the first on a shared queue (SQLite: it refuses)."""
    with queue_url_for("redis") as url:
        settings = make_settings(
            tmp_path / "home", tiny_server[1], queue_url=Secret(url), refresh_interval_s=0
        )
        settings.ensure_home()
        env = {**settings.to_env(), "PATH": "/usr/bin:/bin"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-P", "-m", "testio_sync", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        try:
            wait_until(lambda: len(worker_pids(settings.worker_lock_path)) == 2, what="2 workers")
            assert sorted(worker_pids(settings.worker_lock_path)) == sorted(p.pid for p in procs)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
                proc.stderr.close()


def test_a_worker_marks_the_run_of_a_dead_worker_abandoned_within_seconds(
    home, tiny_server, shared_url
):
    """No status call, no waiter, no periodic tick: the live worker itself sees the dead run.

    The row says "running" for a process that is gone (a worker SIGKILLed mid-sync).
    The periodic task looks only once a minute and not while its worker runs a job;
    the worker's abandon watch looks every ``ABANDON_WATCH_S``.
    """
    settings = make_settings(
        home, tiny_server[1], queue_url=Secret(shared_url), refresh_interval_s=0
    )
    service = SyncService(settings)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait(30)
    workers = Workers(settings)
    try:
        workers.start()
        run_id, attached = runs.create_or_attach(
            service.build_request(),
            run_id=tasks.sync.new_run_id(),
            now=datetime.now(UTC),
            enqueue=lambda rid: None,  # a job some worker took off the queue...
        )
        assert not attached
        assert runs.claim_run(run_id, pid=dead.pid, now=datetime.now(UTC))  # ...then died
        assert runs.get_run(run_id).status == SyncStatus.RUNNING.value
        wait_until(
            lambda: runs.get_run(run_id).status == SyncStatus.ABANDONED.value,
            timeout_s=6.0,  # the watch looks every 2 s; the periodic tick is a minute away
            poll_s=0.05,
            what="the worker to mark the run abandoned",
        )
    finally:
        workers.stop_all()
    assert f"runs abandoned by a dead process: {run_id}" in workers.log()
