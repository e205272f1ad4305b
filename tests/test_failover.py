"""``scripts/failover.py`` for real: the worker holding the sync lock is SIGKILLed mid-sync.

Two worker processes on a shared queue (Redis, PostgreSQL: skipped with the reason
when absent, failed under ``TESTIO_SYNC_REQUIRE_SERVICES=1``), the simulator as a
process of its own at ``seed`` scale with 60 ms latency, so the sync lasts a few
seconds. The store the script leaves behind is compared here with a simulator built
in this process from the same seed, not with anything the script or our code wrote.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from queue_servers import queue_url_for

from testio_sync.simulator import Simulator

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "failover.py"
COUNTED = {"products": "products", "features": "features", "tests": "tests", "bugs": "bugs"}


def stored_counts(db_path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(db_path)) as db:
        return {
            name: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for name, table in COUNTED.items()
        }


@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_the_surviving_worker_abandons_the_killed_run_and_the_next_sync_reaches_the_truth(
    tmp_path: Path, backend: str
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TESTIO_")}
    with queue_url_for(backend) as url:
        argv = ["--queue-url", str(url), "--scale", "seed", "--latency-ms", "60"]
        argv += ["--kill-at", "0.1", "--home", str(tmp_path / "run"), "--json"]
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout)
    assert figures["ok"] and all(figures["checks"].values()), figures["checks"]

    truth = Simulator(scale="seed", seed=1, token="unused-token-0123").truth()
    assert 0 < figures["bugs_at_kill"] < truth["bugs"]  # killed mid-sync, not before or after
    assert figures["first_status"] == "abandoned"
    assert figures["killed_pid"] != figures["survivor_pid"]
    assert figures["next_status"] == "succeeded"
    assert figures["next_owner_pid"] == figures["survivor_pid"]
    timeline = figures["timeline"]
    assert timeline["holder killed"] < timeline["abandoned seen"] < timeline["next sync done"]
    assert timeline["abandoned seen"] - timeline["holder killed"] < 10  # not the minute tick
    assert stored_counts(tmp_path / "run" / "home" / "cache.db") == {
        name: truth[name] for name in COUNTED
    }
    assert figures["checks"]["queue cleaned"]
