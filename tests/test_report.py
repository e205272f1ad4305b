"""The quality report, without MCP: numbers against the simulator's own data, filters, health."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from testsupport import TOKEN, make_settings

from testio_sync.errors import UsageError
from testio_sync.insights.filters import EXECUTED_STATUSES, TEST_STATUSES, ReportFilters
from testio_sync.insights.report import (
    HealthThresholds,
    build_quality_report,
    compute_rates,
    quality_report,
)
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.db import open_store
from testio_sync.store.models import ExploratoryTest, database
from testio_sync.sync.types import SyncStatus, SyncTrigger

BUCKETS = ("active_accepted", "auto_accepted", "rejected", "open", "unknown")


def synced_settings(home: Path, server: tuple[Simulator, str]) -> Settings:
    """Settings for ``home`` after a full in-process sync of ``server`` (no bugs yet)."""
    settings = make_settings(home, server[1])
    handle = SyncService(settings).execute_sync(trigger=SyncTrigger.CLI, allow_in_process=True)
    assert handle.wait(30).status == SyncStatus.SUCCEEDED
    return settings


@pytest.fixture(scope="module")
def synced(
    module_store: str, tiny_server: tuple[Simulator, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """One synced home for the module (on each store), its bugs fetched once by a first
    report."""
    settings = synced_settings(tmp_path_factory.mktemp("report") / "home", tiny_server)
    asyncio.run(quality_report(ReportFilters.parse(all_products(tiny_server[0])), settings))
    return settings


@pytest.fixture
def store(synced: Settings) -> Settings:
    """The module's store, bound again (other tests may have opened another database)."""
    open_store(synced)
    return synced


def all_products(sim: Simulator) -> list[int]:
    return sorted(sim.world.products)


def expected(
    sim: Simulator,
    product_ids: Iterable[int],
    statuses: Iterable[str] = EXECUTED_STATUSES,
    *,
    keep: Any = lambda test: True,
) -> dict[str, Any]:
    """Counts computed straight from the simulator's world, not through the client or store."""
    pids, wanted = set(product_ids), set(statuses)
    with sim.lock:
        tests = [
            t
            for t in sim.world.tests.values()
            if t.product_id in pids and t.status in wanted and keep(t)
        ]
        bugs = [sim.world.bugs[b] for t in tests for b in sim.world.bugs_by_test[t.id]]
    buckets = Counter(
        "open"
        if b.status == "forwarded"
        else ("auto_accepted" if b.auto_accepted else "active_accepted")
        if b.status == "accepted"
        else "rejected"
        if b.status == "rejected"
        else "unknown"
        for b in bugs
    )
    return {
        "total_tests": len(tests),
        "tests_by_status": Counter(t.status for t in tests),
        "tests_by_testing_type": Counter(t.testing_type or "unknown" for t in tests),
        "total_bugs": len(bugs),
        "bugs_by_status": {k: buckets.get(k, 0) for k in BUCKETS},
        "bugs_by_severity": Counter(b.severity for b in bugs),
        "rejected_by_reason": Counter(b.reject_reason for b in bugs if b.status == "rejected"),
    }


def expected_rates(counts: dict[str, int]) -> dict[str, tuple[float | None, str]]:
    """The five rates and health words, written out again from the issue's definitions."""
    total = sum(counts.values())
    active, auto, rejected = counts["active_accepted"], counts["auto_accepted"], counts["rejected"]

    def high_bad(v: float | None, warn: float, crit: float) -> str:
        return (
            "unknown"
            if v is None
            else "critical"
            if v >= crit
            else "warning"
            if v >= warn
            else "healthy"
        )

    def low_bad(v: float | None, warn: float, crit: float) -> str:
        return (
            "unknown"
            if v is None
            else "critical"
            if v <= crit
            else "warning"
            if v <= warn
            else "healthy"
        )

    active_r = active / total if total else None
    auto_r = auto / (active + auto) if active + auto else None
    overall = (active + auto) / total if total else None
    rejection = rejected / total if total else None
    review = (active + rejected) / total if total else None
    return {
        "active_acceptance_rate": (active_r, low_bad(active_r, 0.35, 0.20)),
        "auto_acceptance_rate": (auto_r, high_bad(auto_r, 0.20, 0.40)),
        "overall_acceptance_rate": (overall, "unknown" if overall is None else "healthy"),
        "rejection_rate": (rejection, high_bad(rejection, 0.20, 0.35)),
        "review_rate": (review, low_bad(review, 0.80, 0.60)),
    }


def assert_section(section: dict[str, Any], want: dict[str, Any]) -> None:
    for key in ("total_tests", "total_bugs", "bugs_by_status"):
        assert section[key] == want[key], key
    for key in (
        "tests_by_status",
        "tests_by_testing_type",
        "bugs_by_severity",
        "rejected_by_reason",
    ):
        assert section[key] == dict(want[key]), key
    assert section["avg_bugs_per_test"] == round(want["total_bugs"] / want["total_tests"], 2)
    for name, (value, health) in expected_rates(want["bugs_by_status"]).items():
        got = section["rates"][name]
        assert got["health"] == health, name
        assert got["value"] == (None if value is None else pytest.approx(value, abs=1e-4)), name


def test_report_over_all_products_matches_the_simulators_own_counts(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """Totals, breakdowns, rates and health words equal those computed from the world."""
    sim = tiny_server[0]
    products = all_products(sim)
    report = build_quality_report(ReportFilters.parse(products))

    assert_section(report, expected(sim, products))
    assert report["total_bugs"] > 0 and report["rejected_by_reason"]
    assert report["filters"] == {"statuses": list(EXECUTED_STATUSES)}
    assert "warnings" not in report
    assert [p["product_id"] for p in report["products"]] == products
    for section in report["products"]:
        assert section["name"] == sim.world.products[section["product_id"]].name
        assert_section(section, expected(sim, [section["product_id"]]))


def test_report_of_one_product_has_no_breakdown_and_says_how_old_its_data_is(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """A single product gets no ``products`` list; data_as_of is an ISO time, not in the future."""
    sim = tiny_server[0]
    pid = all_products(sim)[0]
    report = build_quality_report(ReportFilters.parse([pid]))

    assert "products" not in report
    assert_section(report, expected(sim, [pid]))
    as_of = datetime.fromisoformat(report["data_as_of"].replace("Z", "+00:00"))
    assert as_of <= datetime.now(UTC)


def test_dates_filter_on_test_end_in_whole_utc_days(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """start_date and end_date include every test ending on those days, whatever the hour."""
    sim = tiny_server[0]
    products = all_products(sim)
    with sim.lock:
        ends = sorted(t.end_at for t in sim.world.tests.values() if t.status == "archived")
    start = datetime.fromtimestamp(ends[len(ends) // 4], UTC).date()
    end = datetime.fromtimestamp(ends[len(ends) // 2], UTC).date()
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    hi = (datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)).timestamp()

    report = build_quality_report(
        ReportFilters.parse(products, start_date=start.isoformat(), end_date=end.isoformat())
    )

    want = expected(sim, products, keep=lambda t: lo <= t.end_at < hi)
    assert 0 < report["total_tests"] == want["total_tests"]
    assert report["total_bugs"] == want["total_bugs"]
    assert report["filters"]["start_date"] == start.isoformat()


def test_status_and_testing_type_filters_narrow_the_tests(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    sim = tiny_server[0]
    products = all_products(sim)
    report = build_quality_report(
        ReportFilters.parse(products, statuses=["archived"], testing_type="coverage")
    )

    want = expected(sim, products, ["archived"], keep=lambda t: t.testing_type == "coverage")
    assert report["total_tests"] == want["total_tests"] > 0
    assert report["tests_by_status"] == {"archived": want["total_tests"]}
    assert report["total_bugs"] == want["total_bugs"]


def test_test_ids_replace_the_filters(store: Settings, tiny_server: tuple[Simulator, str]) -> None:
    """Explicit tests are reported whatever their status (a waiting test counts too)."""
    sim = tiny_server[0]
    products = all_products(sim)
    with sim.lock:
        chosen = sorted(sim.world.tests)[:5]
    report = build_quality_report(ReportFilters.parse(products, test_ids=chosen))

    want = expected(sim, products, TEST_STATUSES, keep=lambda t: t.id in chosen)
    assert report["total_tests"] == 5
    assert report["total_bugs"] == want["total_bugs"]
    assert report["filters"] == {"test_ids": chosen}


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"product_ids": []}, "at least one product"),
        ({"product_ids": [0]}, "positive"),
        ({"product_ids": [1], "start_date": "soon"}, "'soon' is not a date"),
        ({"product_ids": [1], "start_date": "2026-02-01", "end_date": "2026-01-01"}, "after"),
        ({"product_ids": [1], "statuses": ["done"]}, "unknown done"),
        ({"product_ids": [1], "test_ids": [5], "statuses": ["archived"]}, "replace the filters"),
    ],
)
def test_bad_filters_are_refused_with_a_one_line_reason(
    arguments: dict[str, Any], fragment: str
) -> None:
    """One line naming the value; the parameter at fault rides along for each edge to name."""
    with pytest.raises(UsageError, match=fragment) as caught:
        ReportFilters.parse(**arguments)
    assert "\n" not in str(caught.value)
    assert caught.value.param in arguments


def test_unknown_products_and_foreign_test_ids_name_the_fix(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    sim = tiny_server[0]
    first, second = all_products(sim)[:2]
    with sim.lock:
        foreign = next(t.id for t in sim.world.tests.values() if t.product_id == second)

    with pytest.raises(UsageError, match=r"^Product\(s\) 999999 not in the local mirror$") as no:
        build_quality_report(ReportFilters.parse([999_999]))
    assert no.value.hint == "products"
    with pytest.raises(UsageError, match=f"{foreign} are not stored under product") as out:
        build_quality_report(ReportFilters.parse([first], test_ids=[foreign]))
    assert (out.value.param, out.value.hint) == ("test_ids", "tests")


@pytest.mark.parametrize(
    ("rate", "value", "health"),
    [
        ("rejection_rate", 0.1999, "healthy"),
        ("rejection_rate", 0.20, "warning"),
        ("rejection_rate", 0.35, "critical"),
        ("auto_acceptance_rate", 0.20, "warning"),
        ("auto_acceptance_rate", 0.3999, "warning"),
        ("auto_acceptance_rate", 0.40, "critical"),
        ("active_acceptance_rate", 0.3501, "healthy"),
        ("active_acceptance_rate", 0.35, "warning"),
        ("active_acceptance_rate", 0.20, "critical"),
        ("review_rate", 0.80, "warning"),
        ("review_rate", 0.8001, "healthy"),
        ("review_rate", 0.60, "critical"),
        ("overall_acceptance_rate", 0.01, "healthy"),
        ("review_rate", None, "unknown"),
    ],
)
def test_health_boundaries_are_inclusive(rate: str, value: float | None, health: str) -> None:
    assert HealthThresholds().health(rate, value) == health


def test_thresholds_are_configurable() -> None:
    strict = dataclasses.replace(HealthThresholds(), rejection_warning=0.05)
    assert strict.health("rejection_rate", 0.06) == "warning"
    assert HealthThresholds().health("rejection_rate", 0.06) == "healthy"


def test_rates_are_null_without_bugs_and_auto_rate_null_without_acceptances() -> None:
    assert set(compute_rates(dict.fromkeys(BUCKETS, 0)).values()) == {None}
    rates = compute_rates({"active_accepted": 0, "auto_accepted": 0, "rejected": 3, "open": 1})
    assert rates["auto_acceptance_rate"] is None
    assert rates["rejection_rate"] == 0.75
    assert rates["review_rate"] == 0.75
    assert rates["overall_acceptance_rate"] == 0.0


def test_fresh_bugs_are_not_fetched_again(
    store: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """Within the TTL the report reads the store only: no bug request reaches the API."""
    sim = tiny_server[0]
    before = sim.stats()["by_endpoint"].get("bugs", 0)
    report = asyncio.run(quality_report(ReportFilters.parse(all_products(sim)), store))
    assert sim.stats()["by_endpoint"].get("bugs", 0) == before
    assert report["total_bugs"] == expected(sim, all_products(sim))["total_bugs"]


def test_stale_bugs_of_mutable_tests_are_refetched_and_immutable_ones_never(
    tiny_server: tuple[Simulator, str], tmp_path: Path, store_backend: str
) -> None:
    """Past the TTL only tests whose bugs can still change are fetched again."""
    sim = tiny_server[0]
    settings = synced_settings(tmp_path / "home", tiny_server)
    filters = ReportFilters.parse(all_products(sim), statuses=list(EXECUTED_STATUSES))
    first = asyncio.run(quality_report(filters, settings))
    with database.connection_context():
        stamps = {t.id: (t.bugs_synced_at, t.bugs_final) for t in ExploratoryTest.select()}
    assert first["data_as_of"] is not None

    later = datetime.now(UTC) + timedelta(seconds=settings.cache_ttl_s + 60)
    second = asyncio.run(quality_report(filters, settings, now=lambda: later))

    with database.connection_context():
        after = {t.id: t.bugs_synced_at for t in ExploratoryTest.select()}
    scope = {t for t, s in after.items() if s is not None}
    refetched = {t for t in scope if after[t] != stamps[t][0]}
    final = {t for t in scope if stamps[t][1]}
    assert final and refetched
    assert refetched.isdisjoint(final)
    assert refetched == scope - final
    assert second["total_bugs"] == first["total_bugs"]


def test_a_failed_refresh_is_reported_and_stored_data_used(
    fresh_server: tuple[Simulator, str], tmp_path: Path, store_backend: str
) -> None:
    """A revoked token does not fail the report: it says bugs were not refreshed."""
    sim = fresh_server[0]
    settings = synced_settings(tmp_path / "home", fresh_server)
    sim.update_faults(token_revoked=True)

    report = asyncio.run(quality_report(ReportFilters.parse(all_products(sim)), settings))

    assert report["total_tests"] > 0 and report["total_bugs"] == 0
    assert any("could not be refreshed" in w for w in report["warnings"])
    assert any("never fetched" in w for w in report["warnings"])
    assert TOKEN not in str(report)
