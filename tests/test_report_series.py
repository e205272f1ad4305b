"""The HTML report's series are ``query_metrics`` answers: chart data, MCP and world agree.

The store is synced from the simulator, then a few bugs lose their status (the
key dropped, or a status the API does not define) through the store's own save
path, so the ``unknown`` bucket is not empty. Every figure the charts draw is
compared with a ``query_metrics`` call over a real MCP client for the same
scope, and both with a count over the simulator's world (blanked bugs unknown).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from mcp import Client
from testsupport import make_settings
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.insights.filters import EXECUTED_STATUSES, TEST_STATUSES, ReportFilters
from testio_sync.insights.series import chart_series
from testio_sync.mcp_server.server import build_server
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.db import open_database, open_store
from testio_sync.store.models import Bug
from testio_sync.store.save import save_bugs


@dataclass(frozen=True)
class Blanked:
    settings: Settings
    bug_ids: frozenset[int]  # bugs stored without a known status


@pytest.fixture(scope="module")
def blanked(
    tiny_server: tuple[Simulator, str], tmp_path_factory: pytest.TempPathFactory
) -> Blanked:
    """A synced home where every second test with bugs has one bug without a status."""
    sim = tiny_server[0]
    settings = make_settings(tmp_path_factory.mktemp("series") / "home", tiny_server[1])
    result = CliRunner(env=settings.to_env()).invoke(cli.app, ["sync", "--with-bugs", "--quiet"])
    assert result.exit_code == 0, result.output
    open_store(settings)
    with sim.lock:
        tests = sorted(t.id for t in sim.world.tests.values() if sim.world.bugs_by_test[t.id])
    chosen = tests[::2]
    stored: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for test_id, raw in Bug.select(Bug.test, Bug.raw).where(Bug.test.in_(chosen)).tuples():
        stored[test_id].append(raw)
    blank: set[int] = set()
    for n, test_id in enumerate(chosen):
        bug = min(stored[test_id], key=lambda b: b["id"])
        if n % 3 == 2:
            bug["status"] = "triaged"  # a status the API does not define
        else:
            del bug["status"]
        blank.add(bug["id"])
    save_bugs(chosen, stored, now=datetime.now(UTC))
    assert len(blank) >= 3
    return Blanked(settings, frozenset(blank))


@pytest.fixture
def store(blanked: Blanked) -> Blanked:
    open_database(blanked.settings.db_path)
    return blanked


@dataclass(frozen=True)
class Scope:
    """One report scope, as report filters, as ``query_metrics`` arguments, as a test filter."""

    filters: ReportFilters
    mcp: dict[str, Any]
    keep: Callable[[Any], bool]


def _day(seconds: int) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()


def every_product(sim: Simulator) -> Scope:
    products = sorted(sim.world.products)
    return Scope(
        ReportFilters.parse(products),
        {"filters": {"product": products}},
        lambda t: t.product_id in products and t.status in EXECUTED_STATUSES,
    )


def one_product_dated(sim: Simulator) -> Scope:
    """The middle third of one product's tests by end day, archived or locked ones only."""
    pid = sorted(sim.world.products)[0]
    days = sorted(_day(t.end_at) for t in sim.world.tests.values() if t.product_id == pid)
    start, end = days[len(days) // 3], days[2 * len(days) // 3]
    statuses = ["archived", "locked"]
    return Scope(
        ReportFilters.parse(
            [pid], start_date=start.isoformat(), end_date=end.isoformat(), statuses=statuses
        ),
        {
            "filters": {"product": pid, "test_status": statuses},
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
        },
        lambda t: t.product_id == pid and t.status in statuses and start <= _day(t.end_at) <= end,
    )


def one_testing_type(sim: Simulator) -> Scope:
    products = sorted(sim.world.products)
    kind = Counter(t.testing_type for t in sim.world.tests.values()).most_common(1)[0][0]
    return Scope(
        ReportFilters.parse(products, testing_type=kind),
        {"filters": {"product": products, "testing_type": kind}},
        lambda t: t.status in EXECUTED_STATUSES and t.testing_type == kind,
    )


def some_tests(sim: Simulator) -> Scope:
    """Explicit test ids (any status): the engine reads them from the report's filters."""
    products = sorted(sim.world.products)
    ids = sorted(sim.world.tests)[::3]
    return Scope(
        ReportFilters.parse(products, test_ids=ids),
        {"filters": {"product": products, "test": ids, "test_status": list(TEST_STATUSES)}},
        lambda t: t.id in ids,
    )


def bucket(bug: Any, blank: frozenset[int]) -> str:
    if bug.id in blank:
        return "unknown"
    if bug.status == "accepted":
        return "auto_accepted" if bug.auto_accepted else "active_accepted"
    return {"rejected": "rejected", "forwarded": "open"}.get(bug.status, "unknown")


def rejection_rate(buckets: list[str]) -> float | None:
    return round(buckets.count("rejected") / len(buckets), 4) if buckets else None


def world_truth(sim: Simulator, scope: Scope, blank: frozenset[int]) -> dict[str, Any]:
    """Per month: tests, bugs by bucket and rejection rate; the top 10 features."""
    tests_per_month: Counter[str] = Counter()
    by_month: dict[str, list[str]] = defaultdict(list)
    by_feature: dict[int, list[str]] = defaultdict(list)
    with sim.lock:
        for test in sim.world.tests.values():
            if not scope.keep(test):
                continue
            month = _day(test.end_at).strftime("%Y-%m")
            tests_per_month[month] += 1
            covered = {f.feature_id for f in test.features}
            for bug in (sim.world.bugs[b] for b in sim.world.bugs_by_test[test.id]):
                by_month[month].append(bucket(bug, blank))
                if bug.feature_id in covered:
                    by_feature[bug.feature_id].append(bucket(bug, blank))
    ranked = sorted(by_feature.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:10]
    return {
        "tests": dict(tests_per_month),
        "buckets": {(m, b): n for m, bs in by_month.items() for b, n in Counter(bs).items()},
        "rejection": {m: rejection_rate(bs) for m, bs in by_month.items() if bs},
        "features": [(f, len(bs), rejection_rate(bs)) for f, bs in ranked],
    }


async def mcp_truth(settings: Settings, scope: Scope) -> dict[str, Any]:
    """The same figures, each from one ``query_metrics`` call."""

    async def rows(metrics: list[str], dimensions: list[str], **extra: Any) -> list[Any]:
        args = {"metrics": metrics, "dimensions": dimensions, "limit": 1000, **scope.mcp, **extra}
        result = await client.call_tool("query_metrics", args)
        assert not result.is_error, result.content[0].text
        answer = result.structured_content
        assert answer["total_rows"] == len(answer["rows"]) or args["limit"] == 10
        return answer["rows"]

    async with Client(build_server(settings)) as client:
        buckets = await rows(["bug_count"], ["month", "bug_status"])
        monthly = await rows(["test_count", "rejection_rate"], ["month"])
        features = await rows(["bug_count", "rejection_rate"], ["feature"], limit=10)
    return {
        "tests": {r["month"]: r["test_count"] for r in monthly},
        "buckets": {(r["month"], r["bug_status"]): r["bug_count"] for r in buckets},
        "rejection": {
            r["month"]: r["rejection_rate"] for r in monthly if r["rejection_rate"] is not None
        },
        "features": [(r["feature"], r["bug_count"], r["rejection_rate"]) for r in features],
    }


def chart_truth(series: dict[str, Any]) -> dict[str, Any]:
    months = series["monthly"]["months"]
    return {
        "tests": {m["month"]: m["tests"] for m in months if m["tests"]},
        "buckets": {
            (m["month"], b): n for m in months for b, n in m["bugs_by_status"].items() if n
        },
        "rejection": {
            m["month"]: m["rates"]["rejection_rate"]
            for m in months
            if m["rates"]["rejection_rate"] is not None
        },
        "features": [
            (f["feature_id"], f["bugs"], f["rejection_rate"]) for f in series["top_features"]
        ],
    }


@pytest.mark.parametrize(
    "make_scope", [every_product, one_product_dated, one_testing_type, some_tests]
)
def test_chart_series_equal_query_metrics_over_mcp_and_the_world(
    store: Blanked, tiny_server: tuple[Simulator, str], make_scope: Callable[[Simulator], Scope]
) -> None:
    sim = tiny_server[0]
    scope = make_scope(sim)
    world = world_truth(sim, scope, store.bug_ids)
    assert world["features"] and world["tests"]
    assert any(b == "unknown" for _, b in world["buckets"])  # the scope holds blanked bugs

    charts = chart_truth(chart_series(scope.filters))
    mcp = asyncio.run(mcp_truth(store.settings, scope))

    assert charts == mcp == world
    months = [m["month"] for m in chart_series(scope.filters)["monthly"]["months"]]
    assert months == sorted(months) and len(set(months)) == len(months)


def test_unknown_bugs_are_stacked_in_the_chart_and_named_in_the_headline(
    store: Blanked, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim = tiny_server[0]
    scope = every_product(sim)
    world = world_truth(sim, scope, store.bug_ids)
    unknown = sum(n for (_, b), n in world["buckets"].items() if b == "unknown")
    assert unknown >= 3

    out = tmp_path / "report.html"
    runner = CliRunner(env=store.settings.to_env())
    result = runner.invoke(cli.app, ["report", "-f", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    headline = re.search(r"Bugs by status: ([^<]*)</p>", page)
    assert headline and headline.group(1).endswith(f"unknown {unknown:,}")
    first = re.search(
        r'alt="Bugs per month, stacked by status" src="data:image/svg\+xml,([^"]*)"', page
    )
    assert first and ">unknown<" in unquote(first.group(1)).replace(" ", "")
    text = runner.invoke(cli.app, ["report"]).stdout
    assert f"unknown {unknown:,}" in text
    csv_text = runner.invoke(cli.app, ["report", "-f", "csv"]).stdout
    assert csv_text.splitlines()[0].count("bugs_unknown") == 1
