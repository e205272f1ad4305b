"""The product quality report: test and bug counts, acceptance rates and their health.

``build_quality_report`` answers from the local store with a few SQL aggregates
(no API call, no row loaded per bug), so it stays fast on large caches.
``quality_report`` is the entry points' wrapper: it first refetches the stale
bugs of mutable tests in scope through the repository read-through, then builds
the report. A failed refresh never hides itself: the report says which data
could not be refreshed and ``data_as_of`` shows how old the data is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from testio_sync.api.client import ApiClient
from testio_sync.dates import parse_iso, to_iso, utc_now
from testio_sync.errors import ApiError, UsageError
from testio_sync.insights.filters import ReportFilters
from testio_sync.insights.sql_dialect import analytics_reads
from testio_sync.repositories import Repositories
from testio_sync.settings import Settings
from testio_sync.store import backend, queries
from testio_sync.store.queries import status_bucket, store_call
from testio_sync.sync.lock import EntityLocks

logger = logging.getLogger(__name__)

BUG_BUCKETS = queries.STATUS_BUCKETS  # active_accepted, auto_accepted, rejected, open, unknown
UNKNOWN = "unknown"


@dataclass(frozen=True)
class HealthThresholds:
    """Where a rate turns ``warning`` or ``critical``; every boundary is inclusive."""

    rejection_warning: float = 0.20
    rejection_critical: float = 0.35
    auto_acceptance_warning: float = 0.20
    auto_acceptance_critical: float = 0.40
    active_acceptance_warning: float = 0.35
    active_acceptance_critical: float = 0.20
    review_warning: float = 0.80
    review_critical: float = 0.60

    def health(self, rate_name: str, value: float | None) -> str:
        """``healthy``, ``warning``, ``critical``, or ``unknown`` when the rate is null.

        The overall acceptance rate has no thresholds of its own (it is the sum of
        two rates that have them) and is ``healthy`` whenever known.
        """
        if value is None:
            return UNKNOWN
        if rate_name == "rejection_rate":
            return _high_is_bad(value, self.rejection_warning, self.rejection_critical)
        if rate_name == "auto_acceptance_rate":
            return _high_is_bad(value, self.auto_acceptance_warning, self.auto_acceptance_critical)
        if rate_name == "active_acceptance_rate":
            return _low_is_bad(
                value, self.active_acceptance_warning, self.active_acceptance_critical
            )
        if rate_name == "review_rate":
            return _low_is_bad(value, self.review_warning, self.review_critical)
        return "healthy"

    def bands(self) -> dict[str, dict[str, Any]]:
        """Per rate with thresholds: which side is bad, and where warning and critical start."""
        return {
            "active_acceptance_rate": _band(
                "low", self.active_acceptance_warning, self.active_acceptance_critical
            ),
            "auto_acceptance_rate": _band(
                "high", self.auto_acceptance_warning, self.auto_acceptance_critical
            ),
            "rejection_rate": _band("high", self.rejection_warning, self.rejection_critical),
            "review_rate": _band("low", self.review_warning, self.review_critical),
        }


def _band(bad: str, warning: float, critical: float) -> dict[str, Any]:
    return {"bad_when": bad, "warning": warning, "critical": critical}


DEFAULT_THRESHOLDS = HealthThresholds()


def _high_is_bad(value: float, warning: float, critical: float) -> str:
    if value >= critical:
        return "critical"
    return "warning" if value >= warning else "healthy"


def _low_is_bad(value: float, warning: float, critical: float) -> str:
    if value <= critical:
        return "critical"
    return "warning" if value <= warning else "healthy"


def compute_rates(buckets: dict[str, int]) -> dict[str, float | None]:
    """The five rates from bug counts per bucket; each null when its denominator is 0."""
    total = sum(buckets.get(b, 0) for b in BUG_BUCKETS)
    active = buckets.get("active_accepted", 0)
    auto = buckets.get("auto_accepted", 0)
    rejected = buckets.get("rejected", 0)

    def ratio(numerator: int, denominator: int) -> float | None:
        return numerator / denominator if denominator else None

    return {
        "active_acceptance_rate": ratio(active, total),
        "auto_acceptance_rate": ratio(auto, active + auto),
        "overall_acceptance_rate": ratio(active + auto, total),
        "rejection_rate": ratio(rejected, total),
        "review_rate": ratio(active + rejected, total),
    }


# -- filters ---------------------------------------------------------------------------


def _parse_time(text: str | None) -> datetime | None:
    return parse_iso(text)


# -- the report ------------------------------------------------------------------------


@dataclass
class _Section:
    """The counts of one scope (all products, or one of them)."""

    tests_by_status: dict[str, int] = field(default_factory=dict)
    tests_by_type: dict[str, int] = field(default_factory=dict)
    bugs_by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUG_BUCKETS, 0))
    bugs_by_severity: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    tests_as_of: datetime | None = None
    bugs_as_of: datetime | None = None
    tests_never_synced: bool = False
    tests_without_bugs_fetched: int = 0

    def to_dict(self, thresholds: HealthThresholds) -> dict[str, Any]:
        total_tests = sum(self.tests_by_status.values())
        total_bugs = sum(self.bugs_by_status.values())
        rates = compute_rates(self.bugs_by_status)
        return {
            "total_tests": total_tests,
            "tests_by_status": _sorted(self.tests_by_status),
            "tests_by_testing_type": _sorted(self.tests_by_type),
            "total_bugs": total_bugs,
            "bugs_by_status": dict(self.bugs_by_status),
            "bugs_by_severity": _sorted(self.bugs_by_severity),
            "rejected_by_reason": _sorted(self.rejected_by_reason),
            "avg_bugs_per_test": round(total_bugs / total_tests, 2) if total_tests else None,
            "rates": {
                name: {
                    "value": None if value is None else round(value, 4),
                    "health": thresholds.health(name, value),
                }
                for name, value in rates.items()
            },
            "data_as_of": to_iso(self.data_as_of),
        }

    def saw_tests(self, synced_at: datetime | None) -> None:
        """Add a product's test-list sync time (None: never synced)."""
        if synced_at is None:
            self.tests_never_synced = True
        elif self.tests_as_of is None or synced_at < self.tests_as_of:
            self.tests_as_of = synced_at

    def saw_bugs(self, oldest: datetime | None, never_fetched: int) -> None:
        """Add the oldest bug fetch of a product's mutable tests, and its never-fetched count."""
        self.tests_without_bugs_fetched += never_fetched
        if oldest is not None and (self.bugs_as_of is None or oldest < self.bugs_as_of):
            self.bugs_as_of = oldest

    @property
    def data_as_of(self) -> datetime | None:
        """The oldest sync time among the data used; None when some was never synced."""
        if self.tests_never_synced or self.tests_as_of is None:
            return None
        if self.bugs_as_of is None:
            return self.tests_as_of
        return min(self.tests_as_of, self.bugs_as_of)


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    """Largest first, so the head of a long breakdown is what matters."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


@store_call("find the products of a report")
def require_products(product_ids: Sequence[int]) -> None:
    """Raises:
    UsageError: some product is not in the local store (the message names the fix).
    """
    missing = sorted(set(product_ids) - set(queries.product_ids()))
    if missing:
        raise UsageError(
            f"Product(s) {', '.join(map(str, missing))} not in the local mirror",
            hint="products",
        )


@store_call("check the testing type of a report")
def require_testing_type(filters: ReportFilters) -> None:
    """Raises:
    UsageError: the testing type is not one the stored tests of these products have.
    """
    if not filters.testing_type:
        return
    rows = backend.execute(
        "SELECT DISTINCT testing_type FROM tests WHERE testing_type IS NOT NULL"
        f" AND product_id {backend.in_ids()} ORDER BY 1",
        [json.dumps(list(filters.product_ids))],
    )
    known = [t for (t,) in rows]
    if filters.testing_type not in known:
        raise UsageError(
            f"unknown {filters.testing_type!r}; "
            f"use {', '.join(known) or '(no tests stored for these products)'}",
            param="testing_type",
        )


@store_call("select the tests of a report")
def scope_test_ids(filters: ReportFilters) -> list[int]:
    where, params = filters.where_sql()
    rows = backend.execute(f"SELECT t.id FROM tests t WHERE {where}", params)
    return [tid for (tid,) in rows]


@store_call("build the quality report")
def build_quality_report(
    filters: ReportFilters, *, thresholds: HealthThresholds = DEFAULT_THRESHOLDS
) -> dict[str, Any]:
    """The report over the stored data, from four SQL aggregates; no API call.

    Raises:
        UsageError: a product is not in the store, or test ids fall outside the products.
        StoreError: the database cannot be read.
    """
    require_products(filters.product_ids)
    require_testing_type(filters)
    where, params = filters.where_sql()
    if filters.test_ids is not None:
        outside = sorted(set(filters.test_ids) - set(scope_test_ids(filters)))
        if outside:
            raise UsageError(
                f"Test(s) {', '.join(map(str, outside[:10]))} are not stored under product(s) "
                f"{', '.join(map(str, filters.product_ids))}",
                param="test_ids",
                hint="tests",
            )
    total = _Section()
    sections = {pid: _Section() for pid in filters.product_ids}

    with analytics_reads():  # one transaction for the four aggregates
        tests = backend.execute(
            f"SELECT t.product_id, t.status, t.testing_type, COUNT(*) FROM tests t WHERE {where}"
            " GROUP BY 1, 2, 3",
            params,
        )
        for pid, status, testing_type, n in tests:
            for section in (sections[pid], total):
                _add(section.tests_by_status, status or UNKNOWN, n)
                _add(section.tests_by_type, testing_type or UNKNOWN, n)

        bugs = backend.execute(
            "SELECT t.product_id, b.status, b.auto_accepted, b.severity, b.reject_reason, COUNT(*)"
            f" FROM bugs b JOIN tests t ON t.id = b.test_id WHERE {where} GROUP BY 1, 2, 3, 4, 5",
            params,
        )
        for pid, status, auto, severity, reason, n in bugs:
            bucket = status_bucket(status, bool(auto))
            for section in (sections[pid], total):
                section.bugs_by_status[bucket] += n
                _add(section.bugs_by_severity, severity or UNKNOWN, n)
                if bucket == "rejected":
                    _add(section.rejected_by_reason, reason or UNKNOWN, n)

        # Bugs of immutable tests never change, so only mutable tests age the bug data.
        freshness = backend.execute(
            "SELECT t.product_id, MIN(t.bugs_synced_at), COUNT(*) - COUNT(t.bugs_synced_at)"
            f" FROM tests t WHERE {where} AND t.bugs_final = 0 GROUP BY 1",
            params,
        )
        for pid, oldest, never in freshness:
            for section in (sections[pid], total):
                section.saw_bugs(_parse_time(oldest), int(never or 0))
        products = backend.execute(
            f"SELECT id, name, tests_synced_at FROM products WHERE id {backend.in_ids()}",
            [json.dumps(list(filters.product_ids))],
        )
        names: dict[int, str] = {}
        for pid, name, tests_synced_at in products:
            names[pid] = name
            for section in (sections[pid], total):
                section.saw_tests(_parse_time(tests_synced_at))

    report: dict[str, Any] = {
        "product_ids": list(filters.product_ids),
        "product_names": {str(pid): names.get(pid) for pid in filters.product_ids},
        "filters": filters.to_dict(),
        **total.to_dict(thresholds),
    }
    if total.tests_without_bugs_fetched:
        report["warnings"] = [
            f"Bugs of {total.tests_without_bugs_fetched} test(s) were never fetched; "
            "they count as 0."
        ]
    if len(filters.product_ids) > 1:
        report["products"] = [
            {"product_id": pid, "name": names.get(pid), **sections[pid].to_dict(thresholds)}
            for pid in filters.product_ids
        ]
    return report


# -- with the read-through refresh --------------------------------------------------------


async def refresh_stale_bugs(
    filters: ReportFilters,
    settings: Settings,
    *,
    locks: EntityLocks | None = None,
    now: Callable[[], datetime] = utc_now,
) -> list[str]:
    """Refetch the stale bugs of mutable tests in scope; returns warnings for what failed.

    Immutable tests whose bugs are final are served from the store and never fetched.
    """
    test_ids = await asyncio.to_thread(scope_test_ids, filters)
    if not test_ids:
        return []

    def needing_bugs(among: list[int]) -> Any:
        return asyncio.to_thread(
            queries.tests_needing_bugs,
            product_ids=filters.product_ids,
            since=None,
            ttl_s=settings.cache_ttl_s,
            now=now(),
            test_ids=among,
        )

    due = await needing_bugs(test_ids)
    if not due:
        return []
    if not settings.api_token:
        return [f"No API token: bugs of {len(due)} test(s) are served from the local mirror."]
    try:
        async with ApiClient.from_settings(settings) as client:
            repos = Repositories(client, settings, locks=locks, now=now)
            # The repository's read-through entry point: stale bugs are refetched, and a
            # test whose fetch failed keeps its stored bugs and stays due.
            await repos.get_bugs_cached_or_refresh(due)
    except ApiError as exc:
        logger.warning("bug refresh for the report failed: %s", exc)
        return [f"Bugs could not be refreshed ({exc}); the report uses stored data."]
    failed = await needing_bugs(due)
    if failed:
        return [
            f"Bugs of {len(failed)} test(s) could not be refreshed; their stored bugs are used."
        ]
    return []


async def quality_report(
    filters: ReportFilters,
    settings: Settings,
    *,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    locks: EntityLocks | None = None,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """Refresh the stale bugs in scope through the repository, then build the report.

    Raises:
        UsageError: unknown products or test ids outside them.
        StoreError: the database cannot be read.
    """
    await asyncio.to_thread(require_products, filters.product_ids)
    warnings = await refresh_stale_bugs(filters, settings, locks=locks, now=now)
    report = await asyncio.to_thread(build_quality_report, filters, thresholds=thresholds)
    if warnings:
        report["warnings"] = [*warnings, *report.get("warnings", [])]
    return report
