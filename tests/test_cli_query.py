"""``testio-sync query`` through typer's CliRunner over a store synced from the simulator."""

from __future__ import annotations

import csv
import io
import json

import pytest
from test_analytics import synced  # noqa: F401  (the module's synced home)
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.cli.query import BAR_WIDTH, parse_filters
from testio_sync.insights.analytics import MetricsQuery, run_query
from testio_sync.insights.metrics_registry import DIMENSIONS, METRICS
from testio_sync.settings import Settings
from testio_sync.store.db import open_store


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, ["query", *args])


def engine(settings: Settings, metrics: list[str], dims: list[str], **kw: object) -> dict:
    open_store(settings)
    return run_query(MetricsQuery.parse(metrics, dims, **kw))  # type: ignore[arg-type]


def test_json_is_the_engines_answer(synced: Settings) -> None:  # noqa: F811
    result = invoke(
        synced, "-m", "bug_count", "-m", "rejection_rate", "--by", "severity",
        "--filter", "bug_status=rejected,open", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    want = engine(
        synced,
        ["bug_count", "rejection_rate"],
        ["severity"],
        filters={"bug_status": ["rejected", "open"]},
    )
    assert json.loads(result.stdout) == want


def test_csv_has_a_header_and_one_line_per_row(synced: Settings) -> None:  # noqa: F811
    result = invoke(synced, "-m", "test_count", "--by", "product", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    want = engine(synced, ["test_count"], ["product"])["rows"]
    assert [r["product"] for r in rows] == [str(r["product"]) for r in want]
    assert list(rows[0]) == ["product", "product_name", "test_count"]


def test_the_table_shows_rows_total_and_freshness(synced: Settings) -> None:  # noqa: F811
    result = invoke(synced, "-m", "bug_count", "-m", "review_rate", "--by", "severity")
    assert result.exit_code == 0, result.output
    want = engine(synced, ["bug_count"], ["severity"])
    for row in want["rows"]:
        assert row["severity"] in result.stdout
        assert f"{row['bug_count']:,}" in result.stdout
    assert f"{want['total_rows']} row(s)" in result.stdout
    assert "Data as of" in result.stdout
    assert "%" in result.stdout  # rates read as percentages


def test_the_chart_draws_one_bar_per_row_scaled_to_the_largest(
    synced: Settings,  # noqa: F811
) -> None:
    result = invoke(synced, "-m", "bug_count", "--by", "severity", "--chart")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    want = engine(synced, ["bug_count"], ["severity"])["rows"]
    assert lines[0] == "bug_count by severity"
    bars = [line.count("█") for line in lines[1:]]
    assert len(bars) == len(want)
    assert bars[0] == BAR_WIDTH and bars == sorted(bars, reverse=True)


def test_list_prints_every_dimension_and_metric(synced: Settings) -> None:  # noqa: F811
    result = invoke(synced, "--list")
    assert result.exit_code == 0
    for name in [*DIMENSIONS, *METRICS]:
        assert f"  {name} " in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "bugz"], "Error: --metric: unknown metric bugz; valid: test_count"),
        (["-m", "bug_count", "--by", "colour"], "Error: --by: unknown dimension colour"),
        (["-m", "bug_count", "--filter", "colour=red"], "Error: --filter: unknown filter colour"),
        (["-m", "bug_count", "-m", "test_count", "--by", "severity", "--chart"], "--chart"),
        (["-m", "bug_count", "--filter", "severity"], "--filter: use NAME=VALUE"),
        (["-m", "bug_count", "-p", "shop"], "'shop' is not a positive product id"),
        (["-m", "bug_count", "--since", "tomorrow"], "is in the future"),
        (["-m", "bug_count", "--json", "--csv"], "exclude each other"),
        (["-m", "bug_count", "-p", "999999"], "not in the local mirror"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    synced: Settings,  # noqa: F811
    args: list[str],
    message: str,
) -> None:
    result = invoke(synced, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_filters_gather_repeated_keys_and_comma_lists() -> None:
    assert parse_filters(["severity=critical,high", "severity=low", "known_bug=true"]) == {
        "severity": ["critical", "high", "low"],
        "known_bug": "true",
    }
