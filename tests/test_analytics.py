"""``query_metrics`` without MCP: numbers against the simulator's own world, scope, errors.

The store is filled by a real sync (bugs included) of the tiny simulator over
HTTP; every expected number below is computed again from ``sim.world`` (tests,
bugs, feature links, devices), never read from the store.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import testsupport
from peewee import Select, Value
from testsupport import make_settings

from testio_sync.errors import UsageError
from testio_sync.insights.analytics import MetricsQuery, run_query
from testio_sync.insights.filters import EXECUTED_STATUSES, ReportFilters
from testio_sync.insights.metrics_registry import DIMENSIONS, METRICS, RATES, SEVERITY_WEIGHTS
from testio_sync.insights.report import build_quality_report
from testio_sync.insights.sql_dialect import (
    TIME_GRAINS,
    PostgresDialect,
    SqliteDialect,
    dialect_for,
)
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.simulator.vocabulary import DEVICES
from testio_sync.store.db import open_database, open_store
from testio_sync.store.models import database
from testio_sync.store.postgres import open_postgres
from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncStatus, SyncTrigger

Row = dict[str, Any]


@pytest.fixture(scope="module")
def synced(
    module_store: str, tiny_server: tuple[Simulator, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """One home for the module (on each store), synced in process with bugs."""
    settings = make_settings(tmp_path_factory.mktemp("analytics") / "home", tiny_server[1])
    handle = SyncService(settings).execute_sync(
        phases=[*DEFAULT_PHASES, SyncPhase.BUGS], trigger=SyncTrigger.CLI, allow_in_process=True
    )
    assert handle.wait(60).status == SyncStatus.SUCCEEDED
    return settings


@pytest.fixture
def sim(synced: Settings, tiny_server: tuple[Simulator, str]) -> Simulator:
    """The simulator whose world the store mirrors, with the store bound again."""
    open_store(synced)
    return tiny_server[0]


# -- the world, computed independently ----------------------------------------------------


def _day(seconds: int) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()


def world_tests(
    sim: Simulator,
    *,
    statuses: Iterable[str] = EXECUTED_STATUSES,
    keep: Callable[[Any], bool] = lambda t: True,
) -> list[Any]:
    wanted = set(statuses)
    with sim.lock:
        return [t for t in sim.world.tests.values() if t.status in wanted and keep(t)]


def world_bugs(sim: Simulator, tests: Iterable[Any]) -> list[tuple[Any, Any]]:
    """(test, bug) pairs of the given tests."""
    with sim.lock:
        return [(t, sim.world.bugs[b]) for t in tests for b in sim.world.bugs_by_test[t.id]]


def bucket(bug: Any) -> str:
    if bug.status == "accepted":
        return "auto_accepted" if bug.auto_accepted else "active_accepted"
    return {"rejected": "rejected", "forwarded": "open"}.get(bug.status, "unknown")


def rate(bugs: list[Any], name: str) -> float | None:
    numerator, denominator, _ = RATES[name]
    below = [b for b in bugs if bucket(b) in denominator]
    above = [b for b in below if bucket(b) in numerator]
    return round(len(above) / len(below), 4) if below else None


def month(test: Any) -> str:
    return _day(test.end_at).strftime("%Y-%m")


def platforms(bug: Any) -> set[str]:
    devices = [DEVICES[(bug.device_index + k) % len(DEVICES)] for k in range(bug.device_count)]
    return {d["operating_system"]["name"] for d in devices}


def rows_by(answer: Row, *dims: str) -> dict[tuple[Any, ...], Row]:
    assert answer["total_rows"] == len(answer["rows"])  # every row fits in the limit
    return {tuple(row[d] for d in dims): row for row in answer["rows"]}


def query(metrics: list[str], dims: list[str] = (), filters: Row | None = None, **kw: Any) -> Row:  # type: ignore[assignment]
    return run_query(MetricsQuery.parse(metrics, list(dims), filters, limit=1000, **kw))


# -- numbers against the world ---------------------------------------------------------


def test_bug_counts_by_severity_and_month_match_the_world(sim: Simulator) -> None:
    pairs = world_bugs(sim, world_tests(sim))
    want = Counter((b.severity, month(t)) for t, b in pairs)

    got = rows_by(query(["bug_count"], ["severity", "month"]), "severity", "month")

    assert {key: row["bug_count"] for key, row in got.items()} == dict(want)


def test_rejection_rate_by_feature_matches_the_world(sim: Simulator) -> None:
    """A bug counts under the feature it was reported on; the label is the feature's title."""
    by_feature: dict[int, list[Any]] = defaultdict(list)
    for _, b in world_bugs(sim, world_tests(sim)):
        if b.feature_id is not None:
            by_feature[b.feature_id].append(b)

    answer = query(["bug_count", "rejection_rate"], ["feature"])
    got = rows_by(answer, "feature")

    assert {k[0]: r["bug_count"] for k, r in got.items()} == {
        f: len(bugs) for f, bugs in by_feature.items()
    }
    assert {k[0]: r["rejection_rate"] for k, r in got.items()} == {
        f: rate(bugs, "rejection_rate") for f, bugs in by_feature.items()
    }
    assert all(row["feature_name"] for row in answer["rows"])


def test_active_testers_by_month_match_the_world(sim: Simulator) -> None:
    testers: dict[str, set[str]] = defaultdict(set)
    for t, b in world_bugs(sim, world_tests(sim)):
        testers[month(t)].add(b.author)

    got = rows_by(query(["active_testers"], ["month"]), "month")

    assert {k[0]: r["active_testers"] for k, r in got.items()} == {
        m: len(names) for m, names in testers.items()
    }


def test_tests_by_testing_type_match_the_world(sim: Simulator) -> None:
    want = Counter(t.testing_type for t in world_tests(sim))

    got = rows_by(query(["test_count"], ["testing_type"]), "testing_type")

    assert {k[0]: r["test_count"] for k, r in got.items()} == dict(want)


def test_feature_by_severity_counts_distinct_and_rates_stay_within_0_and_1(
    sim: Simulator,
) -> None:
    """The many-to-many case: a test covers several features, each test counts under each."""
    tests = world_tests(sim)
    assert any(len({f.feature_id for f in t.features}) > 1 for t in tests)
    covering: dict[int, set[int]] = defaultdict(set)
    for t in tests:
        for link in t.features:
            covering[link.feature_id].add(t.id)
    cells: dict[tuple[int, str], list[tuple[Any, Any]]] = defaultdict(list)
    for t, b in world_bugs(sim, tests):
        if b.feature_id is not None:
            cells[(b.feature_id, b.severity)].append((t, b))

    answer = query(
        ["test_count", "bug_count", *RATES, "bugs_per_test", "known_bug_rate"],
        ["feature", "severity"],
    )
    got = rows_by(answer, "feature", "severity")

    assert set(got) == set(cells)
    for key, pairs in cells.items():
        row = got[key]
        assert row["bug_count"] == len({b.id for _, b in pairs}), key
        assert row["test_count"] == len({t.id for t, _ in pairs}), key
        for name in RATES:
            assert row[name] == rate([b for _, b in pairs], name), (key, name)
            assert row[name] is None or 0 <= row[name] <= 1
    per_feature = rows_by(query(["test_count"], ["feature"]), "feature")
    assert {k[0]: r["test_count"] for k, r in per_feature.items()} == {
        f: len(ids) for f, ids in covering.items()
    }
    assert sum(r["test_count"] for r in per_feature.values()) > len(tests)  # it fans out


def test_platform_counts_each_bug_once_per_operating_system(sim: Simulator) -> None:
    want: Counter[str] = Counter()
    for _, b in world_bugs(sim, world_tests(sim)):
        want.update(platforms(b))

    got = rows_by(query(["bug_count", "critical_bug_count"], ["platform"]), "platform")

    assert {k[0]: r["bug_count"] for k, r in got.items()} == dict(want)
    assert sum(r["bug_count"] for r in got.values()) > len(world_bugs(sim, world_tests(sim)))


def test_customers_are_creators_or_submitters(sim: Simulator) -> None:
    tests = world_tests(sim)
    want: dict[str, set[int]] = defaultdict(set)
    created: Counter[str] = Counter()
    for t in tests:
        for name in {t.created_by, t.submitted_by} - {None}:
            want[name].add(t.id)
        created[t.created_by] += 1

    got = rows_by(query(["test_count", "tests_created"], ["customer"]), "customer")

    assert {k[0]: r["test_count"] for k, r in got.items()} == {n: len(i) for n, i in want.items()}
    assert {k[0]: r["tests_created"] for k, r in got.items() if r["tests_created"]} == dict(created)


def test_severity_score_and_known_rate_follow_their_definitions(sim: Simulator) -> None:
    bugs = [b for _, b in world_bugs(sim, world_tests(sim))]
    answer = query(["bug_severity_score", "known_bug_rate", "bugs_per_test"])
    (row,) = answer["rows"]
    assert row["bug_severity_score"] == sum(SEVERITY_WEIGHTS.get(b.severity, 0) for b in bugs)
    assert row["known_bug_rate"] == round(sum(b.known for b in bugs) / len(bugs), 4)
    assert row["bugs_per_test"] == round(len(bugs) / len(world_tests(sim)), 2)


def test_the_no_dimension_query_equals_the_quality_report(sim: Simulator) -> None:
    """Per product and with dates: the same totals, rates and data_as_of as the report."""
    with sim.lock:
        products = sorted(sim.world.products)
        ends = sorted(t.end_at for t in sim.world.tests.values())
    middle = _day(ends[len(ends) // 2]).isoformat()
    for pid, start in [(pid, None) for pid in products] + [(products[0], middle)]:
        report = build_quality_report(ReportFilters.parse([pid], start_date=start))
        answer = query(
            ["test_count", "bug_count", "bugs_per_test", *RATES],
            filters={"product": pid},
            start_date=start,
        )
        (row,) = answer["rows"]
        assert row["test_count"] == report["total_tests"]
        assert row["bug_count"] == report["total_bugs"]
        assert row["bugs_per_test"] == report["avg_bugs_per_test"]
        for name in RATES:
            assert row[name] == report["rates"][name]["value"], name
        assert answer["data_as_of"] == report["data_as_of"]


def test_dates_and_test_status_scope_like_the_report(sim: Simulator) -> None:
    """end_at days in UTC, both ends inclusive; a test_status filter replaces the default."""
    with sim.lock:
        ends = sorted(_day(t.end_at) for t in sim.world.tests.values())
    start, end = ends[len(ends) // 4], ends[3 * len(ends) // 4]
    tests = world_tests(
        sim, statuses=["archived", "locked"], keep=lambda t: start <= _day(t.end_at) <= end
    )

    answer = query(
        ["test_count", "bug_count"],
        ["test_status"],
        {"test_status": ["archived", "locked"]},
        start_date=start.isoformat(),
        end_date=end.isoformat(),
    )

    got = rows_by(answer, "test_status")
    assert {k[0]: r["test_count"] for k, r in got.items()} == dict(Counter(t.status for t in tests))
    assert sum(r["bug_count"] for r in got.values()) == len(world_bugs(sim, tests))


def test_bug_filters_narrow_the_bugs_and_the_tests_that_have_them(sim: Simulator) -> None:
    tests = world_tests(sim)
    critical = [(t, b) for t, b in world_bugs(sim, tests) if b.severity == "critical"]

    (row,) = query(["bug_count", "test_count"], filters={"severity": "critical"})["rows"]

    assert row == {"bug_count": len(critical), "test_count": len({t.id for t, _ in critical})}


def test_compare_previous_adds_the_period_before_and_the_change(sim: Simulator) -> None:
    with sim.lock:
        ends = sorted(_day(t.end_at) for t in sim.world.tests.values())
    start, end = ends[len(ends) // 2], ends[-1]
    length = (end - start).days + 1
    before_start, before_end = start - timedelta(days=length), start - timedelta(days=1)

    answer = query(
        ["bug_count", "rejection_rate"],
        ["severity"],
        start_date=start.isoformat(),
        end_date=end.isoformat(),
        compare_previous=True,
    )

    assert answer["previous_period"] == {
        "start_date": before_start.isoformat(),
        "end_date": before_end.isoformat(),
    }
    old = [
        b
        for _, b in world_bugs(
            sim, world_tests(sim, keep=lambda t: before_start <= _day(t.end_at) <= before_end)
        )
    ]
    for (severity,), row in rows_by(answer, "severity").items():
        was = [b for b in old if b.severity == severity]
        assert row["bug_count_previous"] == len(was)
        assert row["bug_count_change"] == row["bug_count"] - len(was)
        assert row["rejection_rate_previous"] == rate(was, "rejection_rate")


def test_sort_limit_and_total_rows(sim: Simulator) -> None:
    full = query(["bug_count"], ["tester"])
    top = run_query(
        MetricsQuery.parse(
            ["bug_count"], ["tester"], sort_by="bug_count", sort_order="asc", limit=3
        )
    )
    assert top["total_rows"] == full["total_rows"] > 3
    assert [r["bug_count"] for r in top["rows"]] == sorted(r["bug_count"] for r in full["rows"])[:3]
    assert top["chart"] == {"type": "bar", "x": "tester", "y": "bug_count"}
    months = query(["bug_count"], ["severity", "month"])
    assert [r["month"] for r in months["rows"]] == sorted(r["month"] for r in months["rows"])
    assert months["chart"] == {"type": "line", "x": "month", "y": "bug_count", "series": "severity"}


def test_every_dimension_and_metric_runs_and_id_dimensions_carry_labels(sim: Simulator) -> None:
    for name, dim in DIMENSIONS.items():
        answer = query(list(METRICS), [name])
        assert answer["rows"], name
        if dim.label:
            assert any(row[dim.label] for row in answer["rows"]), name
        for row in answer["rows"]:
            for metric, spec in METRICS.items():
                if spec.digits == 4 and row[metric] is not None:
                    assert 0 <= row[metric] <= 1, (name, metric)


# -- bad requests: one line naming the choices, before any SQL ------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"metrics": ["bugz"]}, ["unknown metric bugz", "bug_count", "rejection_rate"]),
        ({"metrics": []}, ["at least one", "test_count"]),
        (
            {"metrics": ["bug_count"], "dimensions": ["colour"]},
            ["unknown dimension colour", "feature"],
        ),
        (
            {"metrics": ["bug_count"], "dimensions": ["product", "feature", "month", "severity"]},
            ["at most 3"],
        ),
        (
            {"metrics": ["bug_count"], "filters": {"colour": "red"}},
            ["unknown filter colour", "severity"],
        ),
        ({"metrics": ["bug_count"], "filters": {"bug_status": "closed"}}, ["closed", "unknown"]),
        ({"metrics": ["bug_count"], "filters": {"product": "shop"}}, ["not an id"]),
        ({"metrics": ["bug_count"], "filters": {"product": [None]}}, ["drop the null"]),
        ({"metrics": ["bug_count"], "filters": {"known_bug": "maybe"}}, ["true or false"]),
        ({"metrics": ["bug_count"], "start_date": "soonish"}, ["start_date"]),
        ({"metrics": ["bug_count"], "sort_by": "severity"}, ["not in the request", "bug_count"]),
        ({"metrics": ["bug_count"], "sort_order": "up"}, ["asc or desc"]),
        ({"metrics": ["bug_count"], "limit": 0}, ["limit"]),
        ({"metrics": ["bug_count"], "compare_previous": True}, ["needs a start date"]),
        (
            {
                "metrics": ["bug_count"],
                "dimensions": ["month"],
                "start_date": "2026-01-01",
                "compare_previous": True,
            },
            ["time dimension month"],
        ),
    ],
)
def test_bad_requests_fail_in_one_line_naming_the_choices(
    kwargs: dict[str, Any], words: list[str]
) -> None:
    metrics = kwargs.pop("metrics")
    dims = kwargs.pop("dimensions", [])
    filters = kwargs.pop("filters", None)
    with pytest.raises(UsageError) as caught:
        MetricsQuery.parse(metrics, dims, filters, **kwargs)
    message = caught.value.worded(str, {"products": "see the products"})
    assert "\n" not in message
    for word in words:
        assert word in message


def test_an_unknown_product_names_the_fix(sim: Simulator) -> None:
    with pytest.raises(UsageError, match="not in the local mirror"):
        query(["bug_count"], filters={"product": 999_999})


# -- the dialect seam ---------------------------------------------------------------------


def test_time_buckets_match_pythons_calendar_over_seven_years(
    tmp_path: Path, store_backend: str
) -> None:
    """ISO weeks across year ends (2020-W53, 2026-W01 starting in 2025) as Python has them."""
    if store_backend == "postgresql":
        assert testsupport.STORE_URL is not None
        db = open_postgres(testsupport.STORE_URL)
    else:
        db = open_database(tmp_path / "cache.db")
    dialect = dialect_for(db)
    assert isinstance(dialect, PostgresDialect if store_backend == "postgresql" else SqliteDialect)
    days = [date(2019, 12, 20) + timedelta(days=i) for i in range(0, 2600, 3)]
    with db.connection_context():
        for day in days:
            stamp = Value(f"{day.isoformat()}T23:59:59.999999Z")
            select = Select(columns=[dialect.time_bucket(g, stamp) for g in TIME_GRAINS])
            sql, params = database.get_sql_context().sql(select).query()
            year, week, _ = day.isocalendar()
            assert tuple(db.execute_sql(sql, params).fetchone()) == (
                day.isoformat(),
                f"{year}-W{week:02d}",
                day.strftime("%Y-%m"),
                f"{day.year}-Q{(day.month + 2) // 3}",
                str(day.year),
            ), day
