"""The report's breakdowns for charts: bugs per month and the top features, from analytics.

Every figure here is a ``query_metrics`` answer (``analytics.run_query``) over
exactly the tests the quality report covers (its ``ReportFilters`` are the
query's scope, test ids included), so a chart and a ``query_metrics`` call for
the same scope can never disagree. A test belongs to the UTC month of its
``end_at``; bugs are bucketed by the store's one rule (``bug_status``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from testio_sync.insights.analytics import ALL_ROWS, MetricsQuery, run_query
from testio_sync.insights.filters import ReportFilters
from testio_sync.insights.metrics_registry import RATES

NO_TITLE = "feature {}"


def _rows(
    scope: ReportFilters,
    metrics: tuple[str, ...],
    dimensions: tuple[str, ...],
    *,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """The engine's rows for a query built here from registry names (nothing to parse).

    Every row by the first dimension, or with ``top`` the ``top`` rows of the first metric.
    """
    query = MetricsQuery(
        metrics=metrics,
        dimensions=dimensions,
        scope=scope,
        sort_by=dimensions[0] if top is None else metrics[0],
        descending=top is not None,
        limit=ALL_ROWS if top is None else top,
    )
    return run_query(query)["rows"]


def monthly_series(filters: ReportFilters) -> dict[str, Any]:
    """Tests and bugs per UTC month of the tests' end, with bucket counts and rates.

    Months run from the first to the last month with a test, gaps included (as
    zero rows), so a chart's axis has no holes. Tests in scope without an end
    date belong to no month: their count is ``tests_without_end``.
    """
    months: dict[str, dict[str, Any]] = {}
    without_end = 0
    for row in _rows(filters, ("test_count", "bug_count", *RATES), ("month",)):
        if row["month"] is None:
            without_end = row["test_count"]
            continue
        months[row["month"]] = {
            "month": row["month"],
            "tests": row["test_count"],
            "bugs": row["bug_count"],
            "bugs_by_status": {},
            "rates": {name: row[name] for name in RATES},
        }
    for row in _rows(filters, ("bug_count",), ("month", "bug_status")):
        if row["month"] is not None:
            months[row["month"]]["bugs_by_status"][row["bug_status"]] = row["bug_count"]
    rows = [months.get(m) or _empty(m) for m in _month_range(months)] if months else []
    return {"months": rows, "tests_without_end": without_end}


def top_features(filters: ReportFilters, limit: int = 10) -> list[dict[str, Any]]:
    """The features with most bugs in scope, each with its rejection rate (of its bugs).

    A bug counts under the feature it was reported on (the engine's ``feature``
    dimension), so bugs reported on no feature of their test are in no bar.
    """
    rows = _rows(filters, ("bug_count", "rejection_rate"), ("feature",), top=limit)
    return [
        {
            "feature_id": row["feature"],
            "title": row["feature_name"] or NO_TITLE.format(row["feature"]),
            "bugs": row["bug_count"],
            "rejection_rate": row["rejection_rate"],
        }
        for row in rows
    ]


def _empty(month: str) -> dict[str, Any]:
    return {
        "month": month,
        "tests": 0,
        "bugs": 0,
        "bugs_by_status": {},
        "rates": dict.fromkeys(RATES),
    }


def _month_range(months: dict[str, Any]) -> list[str]:
    first, last = min(months), max(months)
    year, month = int(first[:4]), int(first[5:7])
    out = []
    while True:
        key = f"{year:04d}-{month:02d}"
        out.append(key)
        if key >= last:
            return out
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def chart_series(filters: ReportFilters) -> dict[str, Any]:
    """What the HTML report draws beyond the report: months and features, overall and
    per product (per product only when several are asked)."""
    series: dict[str, Any] = {
        "monthly": monthly_series(filters),
        "top_features": top_features(filters),
        "products": {},
    }
    if len(filters.product_ids) > 1:
        for pid in filters.product_ids:
            one = dataclasses.replace(filters, product_ids=(pid,))
            series["products"][pid] = {"monthly": monthly_series(one)}
    return series
