"""MCP ``sync_data``: one status word for an unfinished run, bugs on request, the CLI's answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from testsupport import make_settings

from testio_sync.mcp_server import build_server
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.tasks.liveness import hold_worker_lock, release_worker_lock

pytestmark = pytest.mark.usefixtures("store_backend")  # each test on both stores


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def sync_data(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("sync_data", args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


@pytest.mark.anyio
async def test_with_bugs_brings_the_bugs_and_the_answer_names_the_completed_phases(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """The bug count is the simulator's, and the phases are those the CLI's --json lists."""
    truth = tiny_server[0].truth()
    answer = await sync_data(settings, {"with_bugs": True})
    assert answer["status"] == "succeeded", answer
    assert answer["phases_completed"] == ["products", "features", "new_tests", "bugs"]
    assert answer["bugs_refreshed"] == truth["bugs"]
    assert answer["tests_discovered"] == truth["tests"]
    without = await sync_data(settings, {})
    assert without["phases_completed"] == ["products", "features", "new_tests"]
    assert without["bugs_refreshed"] == 0


@pytest.mark.anyio
async def test_a_run_waiting_for_the_worker_answers_queued_in_one_word(
    tmp_path: Path, tiny_server: tuple[Simulator, str]
) -> None:
    """Before: ``"status": "running", "queued": true`` for a run no one had started."""
    settings = make_settings(tmp_path / "home", tiny_server[1], mcp_sync_wait_s=0.2)
    SyncService(settings)
    assert hold_worker_lock(settings.worker_lock_path)  # a worker that never picks the run up
    try:
        answer = await sync_data(settings, {})
    finally:
        release_worker_lock(settings.worker_lock_path)
    assert answer["status"] == "queued"
    assert "queued" not in answer  # no second flag beside the status word
    assert answer["run_id"] in answer["next_step"]


@pytest.mark.anyio
async def test_the_report_tool_says_it_refreshes_stale_bugs_through_the_read_through(
    settings: Settings,
) -> None:
    async with Client(build_server(settings)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    described = tools["get_product_quality_report"].description
    assert "stale bugs of tests that can still change" in described
    assert "read-through" in described
    assert "with_bugs" in tools["sync_data"].input_schema["properties"]
