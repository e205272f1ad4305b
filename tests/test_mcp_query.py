"""``query_metrics`` and the ``testio://metrics`` resource through a real ``mcp.Client``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from test_analytics import synced  # noqa: F401  (the module's synced home)

from testio_sync.insights.analytics import MetricsQuery, run_query
from testio_sync.insights.metrics_registry import DIMENSIONS, METRICS
from testio_sync.mcp_server import build_server
from testio_sync.settings import Settings
from testio_sync.store.db import open_store

BUDGET = 1_500  # characters of JSON of the tool's tools/list entry


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_tool_stays_under_its_budget_and_names_where_the_registry_is(
    synced: Settings,  # noqa: F811
) -> None:
    async with Client(build_server(synced)) as client:
        tools = (await client.list_tools()).tools
        resources = (await client.list_resources()).resources
        registry = json.loads((await client.read_resource("testio://metrics")).contents[0].text)
    (entry,) = [
        t.model_dump(by_alias=True, exclude_none=True, mode="json")
        for t in tools
        if t.name == "query_metrics"
    ]
    assert len(json.dumps(entry)) < BUDGET
    assert "testio://metrics" in entry["description"]
    assert entry["annotations"]["readOnlyHint"] is True
    assert '"title"' not in json.dumps(entry["inputSchema"])
    assert "testio://metrics" in [str(r.uri) for r in resources]
    assert set(registry["dimensions"]) == set(DIMENSIONS)
    assert set(registry["metrics"]) == set(METRICS)


async def _call(client: Client, args: dict[str, Any]) -> Any:
    return await client.call_tool("query_metrics", args)


@pytest.mark.anyio
async def test_a_query_answers_what_the_engine_answers(synced: Settings) -> None:  # noqa: F811
    args = {
        "metrics": ["bug_count", "rejection_rate"],
        "dimensions": ["severity", "month"],
        "filters": {"known_bug": False, "bug_status": ["rejected", "open"]},
        "limit": 5,
    }
    async with Client(build_server(synced)) as client:
        result = await _call(client, args)
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    open_store(synced)
    want = run_query(
        MetricsQuery.parse(
            args["metrics"], args["dimensions"], args["filters"], limit=args["limit"]
        )
    )
    assert result.structured_content == want
    assert len(want["rows"]) == 5 < want["total_rows"]
    assert want["data_as_of"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"metrics": ["bugz"]}, ["metrics: unknown metric bugz", "valid: test_count"]),
        ({"metrics": ["bug_count"], "dimensions": ["a", "b"]}, ["unknown dimension a, b"]),
        ({"metrics": ["bug_count"], "filters": {"colour": "red"}}, ["unknown filter colour"]),
        ({"metrics": ["bug_count"], "limit": 5000}, ["limit"]),
    ],
)
async def test_bad_arguments_are_one_line_errors_naming_the_choices(
    synced: Settings,  # noqa: F811
    args: dict[str, Any],
    words: list[str],
) -> None:
    async with Client(build_server(synced)) as client:
        result = await _call(client, args)
    text = result.content[0].text
    assert result.is_error
    assert "\n" not in text and "Traceback" not in text
    for word in words:
        assert word in text
