"""The MCP tools through ``mcp.Client`` in process: syncs, progress, reads, errors, budgets."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError
from testsupport import TOKEN, make_settings

from testio_sync import tasks
from testio_sync.dates import to_iso, utc_now
from testio_sync.errors import (
    AuthError,
    ConfigError,
    RetryableApiError,
    StoreError,
    SyncLockedError,
    UsageError,
)
from testio_sync.mcp_server import WorkerKeeper, build_server, tool_errors
from testio_sync.mcp_server import tools as mcp_tools
from testio_sync.mcp_server.tools import ProgressRelay
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store import queries
from testio_sync.store.db import close_idle_connections, open_store
from testio_sync.sync import runs
from testio_sync.sync.lock import SyncLock
from testio_sync.sync.types import SyncProgress, SyncTrigger

READ_TOOLS = {
    "get_sync_status",
    "get_product_quality_report",
    "list_products",
    "list_tests",
    "get_test_summary",
    "list_bugs",
    "search",
    "list_features",
    "get_feature_summary",
    "list_users",
    "get_user_summary",
    "get_bug_summary",
    "get_product_summary",
}
# The analytics tool, registered beside these; its 1,500 characters are kept free.
ANALYTICS = {"query_metrics"}
ANALYTICS_ROOM = 1_500
EXECUTED = ("running", "locked", "archived", "customer_finalized")


pytestmark = pytest.mark.usefixtures("store_backend")  # each test on both stores


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build_server(settings)) as client:
        yield client


async def call(client: Client, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
    """Call a tool that must succeed; its structured content, checked equal to its text."""
    result = await client.call_tool(tool, args or {}, **kw)
    text = result.content[0].text
    assert not result.is_error, text
    assert json.loads(text) == result.structured_content
    return result.structured_content


async def call_error(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result
    return result.content[0].text


def assert_as_of_since_last_run(as_of: str, *, until_end: bool = True) -> None:
    """``data_as_of`` lies in the last run (from its start to its end, or to now).

    Answers give seconds, so the run's times are compared at that precision.
    """
    run = runs.recent_runs(1)[0]
    end = run.finished_at if until_end else utc_now()
    assert to_iso(run.started_at) <= as_of <= to_iso(end), (as_of, run.started_at, end)


def settings_for(home: Path, server: tuple[Simulator, str], **overrides: Any) -> Settings:
    return make_settings(home, server[1], retry_max_wait_s=1.0, **overrides)


def tool_dicts(tools: list[Any]) -> list[dict[str, Any]]:
    """Tools as tools/list sends them (the library notes' measure)."""
    return [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]


def schema_titles(schema: Any) -> list[str]:
    """Pydantic's generated ``title`` keys left in a schema (a sort value "title" is not one)."""
    if isinstance(schema, dict):
        own = [schema["title"]] if isinstance(schema.get("title"), str) else []
        return own + [t for value in schema.values() for t in schema_titles(value)]
    if isinstance(schema, list):
        return [t for item in schema for t in schema_titles(item)]
    return []


def sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s])


# -- schema budget ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_list_stays_within_its_token_budget(settings: Settings) -> None:
    """Whole tools/list <= 14,000 chars of JSON (room kept for the analytics tool),
    sync_data <= 2,000, short descriptions."""
    async with connected(settings) as client:
        tools = (await client.list_tools()).tools
    entries = {t["name"]: t for t in tool_dicts(tools)}

    assert set(entries) - ANALYTICS == READ_TOOLS | {"sync_data"}
    assert len(json.dumps(list(entries.values()))) <= 14_000
    ours = [entry for name, entry in entries.items() if name not in ANALYTICS]
    assert len(json.dumps(ours)) <= 14_000 - ANALYTICS_ROOM
    assert len(json.dumps(entries["sync_data"])) <= 2_000
    for name, entry in entries.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name)  # `search` is one word
        assert 1 <= sentences(entry["description"]) <= 3, name
        assert "outputSchema" not in entry
        assert not schema_titles(entry["inputSchema"]), name
        read_only = entry["annotations"].get("readOnlyHint")
        assert read_only is (name in READ_TOOLS | ANALYTICS), name
    assert entries["sync_data"]["annotations"]["destructiveHint"] is False
    report = entries["get_product_quality_report"]
    assert "mirror" in report["description"] and "refetched" in report["description"]
    assert report["inputSchema"]["required"] == ["product_ids"]
    assert "force_refresh_bugs" not in json.dumps(report)
    assert set(entries["sync_data"]["inputSchema"]["properties"]) == {
        "product_ids",
        "since",
        "force",
        "with_bugs",
    }


# -- sync_data ----------------------------------------------------------------------------


@pytest.fixture
def opened(settings: Settings) -> Settings:
    """The store opened before a consumer starts (its startup hook opens it too)."""
    SyncService(settings)
    return settings


@pytest.mark.anyio
async def test_sync_data_runs_on_the_worker_and_resets_the_background_timer(
    opened: Settings, tiny_server: tuple[Simulator, str], consumer: object
) -> None:
    """A full sync through the worker: counts, final progress, and the periodic check skips."""
    settings = opened
    truth = tiny_server[0].truth()
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with connected(settings) as client:
        result = await call(client, "sync_data", {}, progress_callback=on_progress)
        status = await call(client, "get_sync_status")

    assert result["status"] == "succeeded"
    assert result["attached"] is False
    assert result["products_synced"] == truth["products"]
    assert result["features_refreshed"] == truth["features"]
    assert result["tests_discovered"] == truth["tests"]
    assert result["errors"] == [] and result["duration_seconds"] >= 0
    assert runs.get_run(result["run_id"]).trigger == "mcp"
    assert progress[-1] == (100, 100, "finished")

    assert status["worker_alive"] is True
    assert status["last_sync_age_seconds"] is not None
    assert {p["id"] for p in status["products"]} == {int(p) for p in truth["per_product"]}
    assert status["active_runs"] == [] and status["broken_tests"] == []
    assert_as_of_since_last_run(status["data_as_of"])

    now = utc_now()
    assert tasks.check_background_sync(settings, now=now) is None
    later = now + timedelta(seconds=settings.refresh_interval_s - 60)
    assert tasks.check_background_sync(settings, now=later) is None


@pytest.mark.anyio
async def test_sync_data_sends_progress_notifications_while_it_waits(
    fresh_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """Progress grows to 100 and its messages name the phase, products done and tests found."""
    fresh_server[0].update_faults(latency_ms=200)
    settings = settings_for(tmp_path / "home", fresh_server)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with connected(settings) as client:
        result = await call(client, "sync_data", {}, progress_callback=on_progress)

    assert result["status"] == "succeeded"
    values = [done for done, _, _ in progress]
    assert values == sorted(set(values)) and values[-1] == 100
    assert {total for _, total, _ in progress} == {100}
    assert progress[-1][2] == "finished"
    middle = [m for _, _, m in progress[1:-1]]
    assert middle, progress
    pattern = r"(products|features|new_tests): \d+/\d+ products, \d+ tests found"
    assert all(re.fullmatch(pattern, m or "") for m in middle), middle


@pytest.mark.anyio
async def test_a_failed_sync_says_failed_keeps_its_errors_and_does_not_reset_the_timer(
    fresh_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """Revoked token: status failed with the reason, no token in the answer, timer untouched."""
    sim = fresh_server[0]
    settings = settings_for(tmp_path / "home", fresh_server)
    async with connected(settings) as client:
        first = await call(client, "sync_data", {})
        assert first["status"] == "succeeded"
        completed = runs.last_sync_completed()

        sim.update_faults(token_revoked=True)
        failed = await client.call_tool("sync_data", {"force": True})

    body = failed.structured_content
    assert body["status"] == "failed" and body["errors"]
    assert "next_step" in body
    assert TOKEN not in failed.content[0].text
    assert runs.last_sync_completed() == completed
    due = completed + timedelta(seconds=settings.refresh_interval_s + 1)
    assert tasks.check_background_sync(settings, now=due) is not None


@pytest.mark.anyio
async def test_a_slow_sync_answers_running_and_get_sync_status_follows_it_to_the_end(
    fresh_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """After mcp_sync_wait_s the tool returns the run id; polling by run id ends in the result."""
    sim = fresh_server[0]
    sim.update_faults(latency_ms=150)
    settings = settings_for(tmp_path / "home", fresh_server, mcp_sync_wait_s=0.2)
    async with connected(settings) as client:
        first = await call(client, "sync_data", {"product_ids": sorted(sim.world.products)[:2]})
        assert first["status"] == "running"
        assert set(first["progress"]) >= {"phase", "products_done", "products_total"}
        assert first["run_id"] in first["next_step"]

        seen: list[str] = []
        with anyio.fail_after(30):
            while True:
                view = await call(client, "get_sync_status", {"run_id": first["run_id"]})
                seen.append(view["status"])
                if view["status"] not in ("queued", "running"):
                    break
                await anyio.sleep(0.1)
    assert view["status"] == "succeeded"
    assert view["run_id"] == first["run_id"]
    assert view["products_synced"] == 2
    assert view["tests_discovered"] > 0


@pytest.mark.anyio
async def test_sync_data_attaches_to_a_cli_sync_that_covers_it(
    fresh_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """A CLI run queued first: sync_data waits on that run instead of starting another."""
    settings = settings_for(tmp_path / "home", fresh_server)
    cli_run = SyncService(settings).execute_sync(trigger=SyncTrigger.CLI, allow_in_process=True)
    started = False

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        nonlocal started
        if not started:  # sync_data has attached: now let the CLI's run go
            started = True
            cli_run.start()

    async with connected(settings) as client:
        product = sorted(fresh_server[0].world.products)[0]
        result = await call(
            client, "sync_data", {"product_ids": [product]}, progress_callback=on_progress
        )
    cli_run.stop()

    assert started
    assert result["run_id"] == cli_run.run_id
    assert result["attached"] is True
    assert result["status"] == "succeeded"
    assert runs.get_run(cli_run.run_id).trigger == "cli"
    assert len(runs.recent_runs(10)) == 1


@pytest.mark.anyio
@pytest.mark.sqlite_only  # argument checks, worded the same whatever the store
@pytest.mark.parametrize(
    ("tool", "args", "fragment"),
    [
        ("sync_data", {"product_ids": ["x"]}, "product_ids.0"),
        ("sync_data", {"product_ids": []}, "at least one id"),
        ("sync_data", {"since": "someday"}, "is not a date"),
        ("sync_data", {"since": "2999-01-01"}, "in the future"),
        ("sync_data", {"product_ids": [999_999]}, "Unknown product id"),
        ("get_sync_status", {"run_id": "nope"}, "No sync run 'nope'"),
        ("get_product_quality_report", {}, "product_ids"),
        (
            "get_product_quality_report",
            {"product_ids": [999_999]},
            "Product(s) 999999 not in the local mirror; list_products shows the mirrored products",
        ),
        ("get_product_quality_report", {"product_ids": [1], "end_date": "x"}, "end_date"),
        ("list_tests", {"product_ids": [1], "limit": 0}, "limit"),
        ("list_tests", {"product_ids": [1], "statuses": ["done"]}, "statuses"),
        ("get_test_summary", {"test_id": 1}, "Test 1 is in neither the mirror nor the API"),
        (
            "list_bugs",
            {"product_ids": [1], "severities": ["nope"]},
            "severities.0: Input should be 'low', 'high', 'critical', 'visual', 'content' or "
            "'custom'",
        ),
        (
            "list_bugs",
            {"product_ids": [1], "statuses": ["done"]},
            "statuses.0: Input should be 'active_accepted', 'auto_accepted', 'rejected', 'open'"
            " or 'unknown'",
        ),
        ("list_bugs", {}, "Give test_ids or product_ids"),
    ],
)
async def test_bad_arguments_come_back_as_one_line_errors(
    settings: Settings, tool: str, args: dict[str, Any], fragment: str
) -> None:
    await _sync(settings)
    async with connected(settings) as client:
        text = await call_error(client, tool, args)
    assert fragment in text
    assert "\n" not in text and "Traceback" not in text
    assert "testio-sync" not in text and "--" not in text  # no CLI command or flag
    assert "cache" not in text  # the same word as the CLI: mirror


async def _sync(settings: Settings) -> None:
    handle = SyncService(settings).execute_sync(trigger=SyncTrigger.CLI, allow_in_process=True)
    await handle.wait_async(30)


# -- reads ----------------------------------------------------------------------------------


@pytest.fixture
def synced(settings: Settings) -> Settings:
    """``settings`` after a full in-process sync of the tiny simulator."""
    anyio.run(_sync, settings)
    return settings


@pytest.mark.anyio
async def test_list_products_and_tests_answer_from_the_store_with_paging(
    synced: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    sim = tiny_server[0]
    truth = sim.truth()
    pid = max(truth["per_product"], key=lambda p: truth["per_product"][p]["tests"])
    count = truth["per_product"][pid]["tests"]
    async with connected(synced) as client:
        products = await call(client, "list_products")
        page1 = await call(client, "list_tests", {"product_ids": [int(pid)], "limit": 5})
        rest = await call(
            client, "list_tests", {"product_ids": [int(pid)], "limit": 100, "offset": 5}
        )
        archived = await call(
            client, "list_tests", {"product_ids": [int(pid)], "statuses": ["archived"]}
        )

    assert {p["id"]: p["test_count"] for p in products["products"]} == {
        int(k): v["tests"] for k, v in truth["per_product"].items()
    }
    assert_as_of_since_last_run(products["data_as_of"])
    assert page1["total"] == count and page1["count"] == 5
    assert page1["next_offset"] == 5 and "offset=5" in page1["hint"]
    assert rest["count"] == count - 5 and "next_offset" not in rest and "hint" not in rest
    ends = [t["end_at"] for t in page1["tests"] + rest["tests"]]
    assert ends == sorted(ends, reverse=True)
    with sim.lock:
        n_archived = sum(
            1
            for t in sim.world.tests.values()
            if t.product_id == int(pid) and t.status == "archived"
        )
    assert archived["total"] == n_archived
    assert {t["status"] for t in archived["tests"]} == {"archived"}
    assert_as_of_since_last_run(page1["data_as_of"])
    assert_as_of_since_last_run(archived["data_as_of"])


@pytest.mark.anyio
async def test_report_test_summary_and_bug_list_agree_with_the_simulator(
    synced: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """The report fetches bugs through the read-through; reads then see them."""
    sim = tiny_server[0]
    products = sorted(sim.world.products)
    with sim.lock:
        tests = [t for t in sim.world.tests.values() if t.status in EXECUTED]
        bugs = [sim.world.bugs[b] for t in tests for b in sim.world.bugs_by_test[t.id]]
        busiest = max(tests, key=lambda t: len(sim.world.bugs_by_test[t.id]))
        own = [sim.world.bugs[b] for b in sim.world.bugs_by_test[busiest.id]]
        auto = [b for b in bugs if b.auto_accepted and b.test_id in {t.id for t in tests}]
    auto_in = sum(1 for b in auto if sim.world.tests[b.test_id].product_id == products[0])

    async with connected(synced) as client:
        before = await call(client, "get_test_summary", {"test_id": busiest.id})
        report = await call(client, "get_product_quality_report", {"product_ids": products})
        summary = await call(client, "get_test_summary", {"test_id": busiest.id})
        listed = await call(client, "list_bugs", {"test_ids": [busiest.id], "limit": 100})
        auto_listed = await call(
            client,
            "list_bugs",
            {"product_ids": [products[0]], "statuses": ["auto_accepted"], "limit": 3},
        )

    # The summary reads through: the busiest test's bugs arrive with the first call.
    assert before["bugs_fetched"] is True and "hint_bugs" not in before
    assert before["bugs"]["total"] == len(own)
    assert report["total_tests"] == len(tests)
    assert report["total_bugs"] == len(bugs)
    assert report["bugs_by_status"]["auto_accepted"] == len(auto)
    assert len(report["products"]) == len(products)
    assert sum(p["total_bugs"] for p in report["products"]) == len(bugs)
    assert_as_of_since_last_run(report["data_as_of"], until_end=False)

    assert summary["bugs_fetched"] is True and summary["bugs"]["total"] == len(own)
    severities: dict[str, int] = {}
    for bug in own:
        severities[bug.severity] = severities.get(bug.severity, 0) + 1
    assert summary["bugs"]["by_severity"] == dict(sorted(severities.items()))
    assert_as_of_since_last_run(summary["data_as_of"], until_end=False)
    assert listed["total"] == len(own) and {b["id"] for b in listed["bugs"]} == {b.id for b in own}
    assert auto_listed["total"] == auto_in and auto_listed["count"] == min(3, auto_in)
    assert {b["status"] for b in auto_listed["bugs"]} == {"auto_accepted"}
    assert_as_of_since_last_run(auto_listed["data_as_of"], until_end=False)


def test_list_bugs_refuses_unknown_severities_naming_the_valid_ones(synced: Settings) -> None:
    """The tool's schema and the plain function accept the same severities."""
    from typing import get_args

    from testio_sync.mcp_server.server import BugSeverity

    assert get_args(BugSeverity) == mcp_tools.BUG_SEVERITIES
    open_store(synced)
    pid = queries.product_ids()[0]
    with pytest.raises(UsageError) as caught:
        mcp_tools.list_bugs_answer(product_ids=[pid], severities=["high", "nope"])
    assert str(caught.value) == "unknown nope; use low, high, critical, visual, content, custom"
    assert caught.value.param == "severities"


# -- read-through ----------------------------------------------------------------------


def world_tests(sim: Simulator, product_id: int) -> dict[int, str]:
    """The simulator's own tests of a product, id -> status."""
    with sim.lock:
        return {t.id: t.status for t in sim.world.tests.values() if t.product_id == product_id}


@pytest.fixture
def moved(tmp_path: Path, fresh_server: tuple[Simulator, str]) -> tuple[Settings, Simulator]:
    """A mirror synced from its own simulator, then the simulator three days on.

    TTL zero: every mutable row in the mirror is stale by the time it is read.
    """
    settings = settings_for(tmp_path / "moved", fresh_server, cache_ttl_s=0)
    anyio.run(_sync, settings)
    fresh_server[0].advance(hours=72)
    return settings, fresh_server[0]


@pytest.mark.anyio
async def test_list_tests_refetches_stale_tests_before_answering(
    moved: tuple[Settings, Simulator],
) -> None:
    """A test whose status moved on in the API is shown with its status of now."""
    settings, sim = moved
    pid = min(sim.world.products)
    real = world_tests(sim, pid)
    open_store(settings)
    before = {t.id: t.status for t in queries.list_tests(product_ids=[pid], limit=100)[0]}
    assert any(real[tid] != status for tid, status in before.items())  # the API moved on
    async with connected(settings) as client:
        page = await call(client, "list_tests", {"product_ids": [pid], "limit": 100})
    shown = {t["id"]: t["status"] for t in page["tests"]}
    assert set(shown) == set(before)
    assert shown == {tid: real[tid] for tid in shown}
    assert "warnings" not in page


@pytest.mark.anyio
async def test_get_test_summary_fetches_a_test_the_mirror_never_saw(
    moved: tuple[Settings, Simulator],
) -> None:
    """A test started after the sync is fetched with its bugs on first ask."""
    settings, sim = moved
    open_store(settings)
    stored = {t.id for t in queries.list_tests(limit=100_000)[0]}
    with sim.lock:
        new = [t for t in sim.world.tests.values() if t.id not in stored]
        test = max(new, key=lambda t: len(sim.world.bugs_by_test[t.id]))
        bugs = len(sim.world.bugs_by_test[test.id])
    async with connected(settings) as client:
        summary = await call(client, "get_test_summary", {"test_id": test.id})
    assert (summary["id"], summary["status"]) == (test.id, test.status)
    assert summary["bugs_fetched"] is True and summary["bugs"]["total"] == bugs


@pytest.mark.anyio
async def test_list_bugs_of_a_product_fetches_the_bugs_a_plain_sync_left_out(
    synced: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """After a sync without bugs, list_bugs shows every bug of the product's tests."""
    sim = tiny_server[0]
    pid = min(sim.world.products)
    with sim.lock:
        expected = {
            b.id
            for t in sim.world.tests.values()
            if t.product_id == pid
            for b in (sim.world.bugs[i] for i in sim.world.bugs_by_test[t.id])
        }
    async with connected(synced) as client:
        listed = await call(client, "list_bugs", {"product_ids": [pid], "limit": 100})
        rest = await call(client, "list_bugs", {"product_ids": [pid], "limit": 100, "offset": 100})
    assert listed["total"] == len(expected)
    assert {b["id"] for b in listed["bugs"] + rest["bugs"]} == expected
    assert "hint_bugs" not in listed


@pytest.mark.anyio
async def test_a_refused_refresh_leaves_the_stored_rows_and_a_warning(
    moved: tuple[Settings, Simulator],
) -> None:
    """The API refuses the token: the stale page is shown as stored, never an error."""
    settings, sim = moved
    pid = min(sim.world.products)
    open_store(settings)
    stored, total = queries.list_tests(product_ids=[pid], limit=5)
    sim.update_faults(token_revoked=True)
    async with connected(settings) as client:
        page = await call(client, "list_tests", {"product_ids": [pid], "limit": 5})
    assert [(t["id"], t["status"]) for t in page["tests"]] == [(t.id, t.status) for t in stored]
    assert page["total"] == total
    assert len(page["warnings"]) == 1
    assert page["warnings"][0].startswith("Answered from the mirror as stored: ")
    assert "(HTTP 401)" in page["warnings"][0]
    assert settings.api_token.reveal() not in page["warnings"][0]


@pytest.mark.anyio
async def test_without_a_token_reads_answer_from_the_mirror_and_say_so(
    synced: Settings,
) -> None:
    no_token = dataclasses.replace(synced, api_token=None)
    async with connected(no_token) as client:
        products = await call(client, "list_products")
        bugs = await call(client, "list_bugs", {"product_ids": [products["products"][0]["id"]]})
    assert products["products"] and "warnings" not in products  # fresh: nothing to fetch
    assert bugs["warnings"] == ["No API token: answered from the mirror as stored."]
    assert bugs["total"] == 0 and "were never fetched" in bugs["hint_bugs"]


@pytest.mark.sqlite_only  # SQLite's file lock and WAL; PostgreSQL readers never block writers
@pytest.mark.anyio
async def test_reads_answer_while_a_sync_holds_the_lock_and_a_write_is_open(
    synced: Settings,
) -> None:
    """Reads take no file lock and SQLite WAL readers never wait for the writer."""
    lock = SyncLock(synced.lock_path, run_id="other-run", timeout_s=1)
    await lock.acquire()
    writer = sqlite3.connect(synced.db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE products SET name = name")
    try:
        async with connected(synced) as client:
            with anyio.fail_after(5):
                products = await call(client, "list_products")
                await call(client, "list_tests", {"product_ids": [products["products"][0]["id"]]})
                status = await call(client, "get_sync_status")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        await lock.release()
    holder = status["lock_holder"]
    assert (holder["run_id"], holder["pid"]) == ("other-run", os.getpid())


def test_a_second_server_uses_the_running_worker_instead_of_starting_one(
    settings: Settings, consumer: object
) -> None:
    keeper = WorkerKeeper(settings)
    assert keeper.ensure() is False
    assert keeper.process is None
    keeper.stop()


def test_no_worker_is_started_when_turned_off(settings: Settings) -> None:
    keeper = WorkerKeeper(settings, enabled=False)
    assert keeper.ensure() is False
    assert keeper.process is None
    assert not WorkerKeeper(settings).settings.worker_lock_path.exists()


# -- the pieces, without MCP -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "step"),
    [
        (AuthError("The token was refused (HTTP 401).", status=401), "TESTIO_CUSTOMER_API_TOKEN"),
        (RetryableApiError("HTTP 503 from /products.", status=503), "retry later"),
        (SyncLockedError("The sync lock is held."), "get_sync_status"),
        (StoreError("Disk full."), "data directory"),
        (UsageError("since: 'x' is not a date."), ""),
    ],
)
def test_package_errors_become_one_line_tool_errors_with_a_next_step(
    settings: Settings, error: Exception, step: str
) -> None:
    with pytest.raises(ToolError) as caught, tool_errors(settings):
        raise error
    text = str(caught.value)
    assert text.startswith(str(error).rstrip("."))
    assert step in text and "\n" not in text


def test_a_token_in_an_error_message_is_masked(settings: Settings) -> None:
    with pytest.raises(ToolError) as caught, tool_errors(settings):
        raise ConfigError(f"bad\nvalue {TOKEN}")
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.anyio
async def test_an_unexpected_crash_reaches_the_client_without_details(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash() -> dict[str, Any]:
        raise RuntimeError(f"boom with {TOKEN}")

    monkeypatch.setattr(mcp_tools, "list_products_answer", crash)
    async with connected(settings) as client:
        text = await call_error(client, "list_products", {})
    assert text == "Error executing tool list_products"


@pytest.mark.anyio
async def test_progress_relay_only_ever_grows_across_phases() -> None:
    sent: list[tuple[float, float, str]] = []

    async def send(done: float, total: float, message: str) -> None:
        sent.append((done, total, message))

    relay = ProgressRelay(send, ["products", "features", "new_tests"])
    steps = [
        SyncProgress(),
        SyncProgress(phase="products", products_total=0),
        SyncProgress(phase="products", products_done=3, products_total=3),
        SyncProgress(phase="features", products_done=0, products_total=3),
        SyncProgress(phase="features", products_done=3, products_total=3),
        SyncProgress(phase="new_tests", products_done=1, products_total=3, tests_found=9),
        SyncProgress(phase="new_tests", products_done=1, products_total=3, tests_found=12),
        # The last phase seen complete: short of 100, so that "finished" still goes out.
        SyncProgress(phase="new_tests", products_done=3, products_total=3, tests_found=40),
        SyncProgress(phase=None, products_done=3, products_total=3, message="finished"),
    ]
    for step in steps:
        await relay(step)

    assert [done for done, _, _ in sent] == [0.0, 33.3, 66.7, 77.8, 99.9, 100.0]
    assert sent[0][2] == "queued" and sent[-1][2] == "finished"
    assert sent[3][2] == "new_tests: 1/3 products, 9 tests found"


@pytest.mark.sqlite_only
@pytest.mark.anyio
async def test_a_damaged_database_error_says_what_rebuilds_it(
    tiny_server: tuple[Simulator, str], home: Path
) -> None:
    """Pages of ``cache.db`` zeroed under a running server: the read tool's error names
    `testio-sync restore` and does not claim that sync_data rebuilds anything."""
    settings = settings_for(home, tiny_server)
    service = SyncService(settings)
    assert service.execute_sync(allow_in_process=True).wait(60).succeeded
    async with connected(settings) as client:
        await call(client, "list_products", {})
        # Closing the pooled connections checkpoints the WAL: the rows are in cache.db.
        close_idle_connections()
        with settings.db_path.open("r+b") as f:
            f.seek(4096)
            f.write(b"\0" * 4096 * 24)
        text = await call_error(client, "list_products", {})
    assert "damaged" in text and "`testio-sync restore`" in text
    assert "rebuild the cache" not in text and "\n" not in text
