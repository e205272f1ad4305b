"""A token revoked while a sync runs: the run stops at once and the last good data stays."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sync.support import WITH_BUGS
from testsupport import TOKEN, make_settings

from testio_sync.service import SyncService
from testio_sync.simulator import Simulator
from testio_sync.sync import runs
from testio_sync.sync.types import SyncStatus

from .support import ids_in, store_problems, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture
def own_server() -> Iterator[tuple[Simulator, str]]:
    """Tiny, with enough tests for a few pages per product: a run to interrupt mid-walk."""
    # Enough pages that read-ahead, with 10 requests in flight, is still walking when revoked.
    sim = Simulator(scale="tiny", seed=4, token=TOKEN, tests=1200, bugs=4800)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


def writing(run_id: str | None) -> bool:
    """True once the run has stored its first page of tests; fails if it ended first."""
    row = runs.get_run(run_id) if run_id else None
    if row is None or row.status == "queued":
        return False
    assert row.status == "running", f"run {run_id} ended before it could be interrupted"
    return (row.progress or {}).get("pages", 0) > 0


def test_a_token_revoked_mid_sync_fails_the_cli_run_fast_and_keeps_the_last_good_data(
    own_server, home
):
    """``testio-sync sync`` as a child: exit 1, an error naming the token, no 401 retried."""
    sim, url = own_server
    settings = make_settings(home, url)
    service = SyncService(settings)
    assert service.execute_sync(WITH_BUGS, allow_in_process=True).wait(60).succeeded
    before = ids_in(settings.db_path)
    sim.update_faults(latency_ms=200)
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_sync", "sync", "--with-bugs", "--force"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        latest: list[str | None] = [None]

        def started() -> bool:
            latest[0] = latest[0] or next((r.run_id for r in runs.active_runs()), None)
            return writing(latest[0])

        wait_until(started, what="the CLI's run to store a page")
        run_id = latest[0]
        sim.reset_stats()
        sim.update_faults(token_revoked=True)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 1, (stdout, stderr)
    output = stdout + stderr
    assert "token" in output.lower() and "401" in output, output
    assert TOKEN not in output
    row = runs.get_run(run_id)
    assert row.status == SyncStatus.FAILED.value and "TESTIO_CUSTOMER_API_TOKEN" in row.error
    after_revoke = sim.stats()["by_status"]
    # In-flight requests end, nothing is retried: at most one 401 per request slot.
    assert set(after_revoke) <= {"200", "401"}, after_revoke
    assert 0 < after_revoke["401"] <= settings.max_concurrent_requests, after_revoke
    assert ids_in(settings.db_path) == before
    assert store_problems(settings.db_path) == []
