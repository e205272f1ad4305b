"""``testio-sync report --format ...``: exports equal the MCP tool and the simulator's own data."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from testsupport import make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.insights.filters import EXECUTED_STATUSES, ReportFilters
from testio_sync.insights.report_text import report_lines
from testio_sync.insights.series import monthly_series, top_features
from testio_sync.mcp_server.server import build_server
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.db import open_store

BUCKETS = ("active_accepted", "auto_accepted", "rejected", "open")


def invoke(settings: Settings, *args: str, **env: str) -> Result:
    return CliRunner(env={**settings.to_env(), **env}).invoke(cli.app, list(args))


@pytest.fixture(scope="module")
def synced(
    module_store: str, tiny_server: tuple[Simulator, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """One home for the module (on each store), synced with bugs through the CLI."""
    settings = make_settings(tmp_path_factory.mktemp("export") / "home", tiny_server[1])
    result = invoke(settings, "sync", "--with-bugs", "--quiet")
    assert result.exit_code == 0, result.output
    return settings


@pytest.fixture
def store(synced: Settings) -> Iterator[Settings]:
    open_store(synced)
    yield synced


def world_bucket(bug: Any) -> str:
    if bug.status == "accepted":
        return "auto_accepted" if bug.auto_accepted else "active_accepted"
    return "rejected" if bug.status == "rejected" else "open"


def executed_tests(sim: Simulator, product_ids: set[int]) -> list[Any]:
    return [
        t
        for t in sim.world.tests.values()
        if t.product_id in product_ids and t.status in EXECUTED_STATUSES
    ]


async def mcp_report(settings: Settings, **args: Any) -> dict[str, Any]:
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("get_product_quality_report", args)
    assert not result.is_error, result.content[0].text
    return result.structured_content


def test_json_csv_and_markdown_exports_carry_the_mcp_tools_numbers(
    store: Settings, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """JSON is the tool's answer; CSV rows and Markdown tables show the same counts."""
    sim = tiny_server[0]
    products = sorted(sim.world.products)
    tool = asyncio.run(mcp_report(store, product_ids=products))
    out = tmp_path / "report.json"
    result = invoke(store, "report", "--format", "json", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == tool

    rows = list(csv.DictReader(io.StringIO(invoke(store, "report", "-f", "csv").stdout)))
    assert [int(r["product_id"]) for r in rows] == products
    for row, section in zip(rows, tool["products"], strict=True):
        want_tests = executed_tests(sim, {section["product_id"]})
        ids = {t.id for t in want_tests}
        buckets = Counter(world_bucket(b) for b in sim.world.bugs.values() if b.test_id in ids)
        assert int(row["total_tests"]) == len(want_tests) == section["total_tests"]
        assert {b: int(row[f"bugs_{b}"]) for b in BUCKETS} == {b: buckets[b] for b in BUCKETS}
        assert row["product_name"] == sim.world.products[section["product_id"]].name
        rate = section["rates"]["rejection_rate"]
        assert (float(row["rejection_rate"]), row["rejection_rate_health"]) == (
            rate["value"],
            rate["health"],
        )

    markdown = invoke(store, "report", "-p", str(products[0]), "-f", "md").stdout
    first = tool["products"][0]
    assert markdown.startswith(f"# Quality report: {first['name']} ({products[0]})")
    assert f"Tests: {first['total_tests']:,}. Bugs: {first['total_bugs']:,}" in markdown
    rejection = first["rates"]["rejection_rate"]
    assert f"| Rejection | {rejection['value']:.1%} | {rejection['health']} |" in markdown


def test_monthly_series_counts_bugs_by_the_utc_month_of_the_tests_end(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """Every month's bucket counts equal the simulator's, and the months add up to the report."""
    sim = tiny_server[0]
    products = sorted(sim.world.products)
    want: dict[str, Counter[str]] = {}
    for test in executed_tests(sim, set(products)):
        month = datetime.fromtimestamp(test.end_at, UTC).strftime("%Y-%m")
        counts = want.setdefault(month, Counter())
        counts.update(world_bucket(sim.world.bugs[b]) for b in sim.world.bugs_by_test[test.id])
    series = monthly_series(ReportFilters.parse(products))
    got = {m["month"]: m["bugs_by_status"] for m in series["months"] if m["bugs"]}
    assert got == {m: dict(c) for m, c in want.items() if c}
    assert series["tests_without_end"] == 0
    months = [m["month"] for m in series["months"]]
    assert months == sorted(months) and len(months) == len(set(months))


def test_top_features_rank_bugs_and_rejections_as_the_simulator_counts_them(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """A bug counts under the feature of its test it was reported on (as in analytics)."""
    sim = tiny_server[0]
    products = sorted(sim.world.products)
    tests = {t.id: t for t in executed_tests(sim, set(products))}
    bugs = [
        b
        for b in sim.world.bugs.values()
        if b.test_id in tests and b.feature_id in {f.feature_id for f in tests[b.test_id].features}
    ]
    per_feature = Counter(b.feature_id for b in bugs)
    rejected = Counter(b.feature_id for b in bugs if b.status == "rejected")
    top = top_features(ReportFilters.parse(products), limit=5)
    assert [f["bugs"] for f in top] == sorted(per_feature.values(), reverse=True)[:5]
    for feature in top:
        fid = feature["feature_id"]
        assert feature["bugs"] == per_feature[fid]
        assert feature["rejection_rate"] == round(rejected[fid] / per_feature[fid], 4)
        assert feature["title"] != f"feature {fid}"  # the stored title, not the fallback


def test_report_without_product_ids_covers_every_product_or_the_configured_ones(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """No --product-ids: all stored products; TESTIO_PRODUCT_IDS narrows it; names in the header."""
    sim = tiny_server[0]
    products = sorted(sim.world.products)
    everything = json.loads(invoke(store, "report", "--json").stdout)
    assert everything["product_ids"] == products
    configured = invoke(store, "report", TESTIO_PRODUCT_IDS=str(products[1]))
    assert configured.exit_code == 0, configured.output
    name = sim.world.products[products[1]].name
    assert configured.stdout.splitlines()[0] == f"Quality report for {name} ({products[1]})"


def test_text_report_says_what_it_counts_what_health_means_and_how_to_refresh(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    pid = sorted(tiny_server[0].world.products)[0]
    text = invoke(store, "report", "-p", str(pid), "--since", "3650d").stdout
    assert f"Counts tests in status: {', '.join(EXECUTED_STATUSES)}" in text
    assert "Period: tests ending on or after " in text
    assert "warning = at or past the warning threshold" in text
    assert "Rejection" in text and "warning >= 20%, critical >= 35%" in text
    assert text.rstrip().splitlines()[-1].endswith("testio-sync sync --with-bugs)")


def test_a_product_without_tests_in_scope_says_no_tests(
    store: Settings, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    pid = sorted(tiny_server[0].world.products)[0]
    empty = ["-p", str(pid), "--start-date", "2001-01-01", "--end-date", "2001-01-31"]
    text = invoke(store, "report", *empty).stdout
    assert "Bugs: 0 (no tests)" in text and "None" not in text
    page = tmp_path / "empty.html"
    assert invoke(store, "report", *empty, "-f", "html", "-o", str(page)).exit_code == 0
    html = page.read_text()
    assert "no tests" in html and "no monthly charts" in html and "<img" not in html


def test_no_mirror_and_an_unwritable_output_are_one_line_errors(
    store: Settings, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    result = invoke(store, "report", "-f", "csv", "-o", str(tmp_path / "missing" / "r.csv"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot write ") and result.stderr.count("\n") == 1
    # A home with no SQLite file (a PostgreSQL mirror always exists once reachable).
    fresh = make_settings(tmp_path / "fresh", tiny_server[1], database_url=None)
    result = invoke(fresh, "report")
    assert result.exit_code == 1 and "testio-sync sync" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--testing-type", "nope"], "--testing-type: unknown 'nope'; use "),
        (["--format", "pdf"], "--format: unknown 'pdf'; use text, html, csv, json, md"),
        (["--format", "html"], "--format html writes a file: add --output FILE"),
        (["--since", "30d", "--start-date", "2026-01-01"], "--since and --start-date"),
        (["--status", "nope"], "--status: unknown nope; use initialized"),
    ],
)
def test_unknown_values_are_one_line_errors_listing_the_valid_ones(
    store: Settings, args: list[str], needle: str
) -> None:
    result = invoke(store, "report", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and needle in result.stderr
    assert result.stdout == ""


def test_the_testing_type_error_lists_the_stored_types(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    sim = tiny_server[0]
    stored = sorted({t.testing_type for t in sim.world.tests.values() if t.testing_type})
    result = invoke(store, "report", "--testing-type", "nope")
    assert result.stderr.strip().endswith(f"use {', '.join(stored)}.")
    good = invoke(store, "report", "--testing-type", stored[0], "--json")
    assert good.exit_code == 0 and json.loads(good.stdout)["filters"]["testing_type"] == stored[0]


def test_an_unknown_bug_bucket_is_shown_only_when_not_zero() -> None:
    """The report may carry an ``unknown`` bucket (bugs without a status): shown when not 0."""
    rates = {"value": None, "health": "unknown"}
    section = {
        "total_tests": 1,
        "tests_by_status": {"archived": 1},
        "tests_by_testing_type": {"coverage": 1},
        "total_bugs": 3,
        "bugs_by_status": {**dict.fromkeys(BUCKETS, 0), "unknown": 3},
        "bugs_by_severity": {"low": 3},
        "rejected_by_reason": {},
        "avg_bugs_per_test": 3.0,
        "rates": dict.fromkeys(
            (
                "active_acceptance_rate",
                "auto_acceptance_rate",
                "overall_acceptance_rate",
                "rejection_rate",
                "review_rate",
            ),
            rates,
        ),
    }
    report = {"product_ids": [1], "product_names": {"1": "Shop"}, "filters": {}, **section}
    assert "unknown 3" in "\n".join(report_lines(report))
    report["bugs_by_status"] = {**dict.fromkeys(BUCKETS, 0), "unknown": 0}
    assert "unknown 0" not in "\n".join(report_lines(report))
