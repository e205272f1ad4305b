"""The report's breakdowns for charts: bugs per month and bugs per feature.

Both read exactly the tests the quality report covers (``ReportFilters.where_sql``)
and bucket bugs with the report's own rule (``status_bucket``), so a chart can
never disagree with the report's totals. ``monthly_series`` stands in for the
analytics engine's month grain until that lands; it keeps the engine's scope
rules: a test belongs to the UTC month of its ``end_at``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from testio_sync.insights.filters import ReportFilters
from testio_sync.insights.report import compute_rates
from testio_sync.store.models import database
from testio_sync.store.queries import status_bucket, store_call

NO_FEATURE = "(no feature)"


@store_call("count bugs per month")
def monthly_series(filters: ReportFilters) -> dict[str, Any]:
    """Tests and bugs per UTC month of the tests' end, with bucket counts and rates.

    Months run from the first to the last month with a test, gaps included (as
    zero rows), so a chart's axis has no holes. Tests in scope without an end
    date belong to no month: their count is ``tests_without_end``.
    """
    where, params = filters.where_sql()
    months: dict[str, dict[str, Any]] = {}
    without_end = 0
    for month, n in database.execute_sql(
        f"SELECT substr(t.end_at, 1, 7), COUNT(*) FROM tests t WHERE {where} GROUP BY 1",
        params,
    ):
        if month is None:
            without_end = n
        else:
            _month(months, month)["tests"] = n
    for month, status, auto, n in database.execute_sql(
        "SELECT substr(t.end_at, 1, 7), b.status, b.auto_accepted, COUNT(*)"
        f" FROM bugs b JOIN tests t ON t.id = b.test_id WHERE {where} AND t.end_at IS NOT NULL"
        " GROUP BY 1, 2, 3",
        params,
    ):
        row = _month(months, month)
        bucket = status_bucket(status, bool(auto))
        row["bugs_by_status"][bucket] = row["bugs_by_status"].get(bucket, 0) + n
        row["bugs"] += n
    rows = [months[m] for m in _month_range(months)] if months else []
    for row in rows:
        row["rates"] = {k: _round(v) for k, v in compute_rates(row["bugs_by_status"]).items()}
    return {"months": rows, "tests_without_end": without_end}


@store_call("count bugs per feature")
def top_features(filters: ReportFilters, limit: int = 10) -> list[dict[str, Any]]:
    """The features with most bugs in scope, each with its rejection rate (of its bugs)."""
    where, params = filters.where_sql()
    rows = database.execute_sql(
        "SELECT b.feature_id, COALESCE(MAX(f.title), MAX(tf.title)), COUNT(*),"
        " SUM(b.status = 'rejected')"
        " FROM bugs b JOIN tests t ON t.id = b.test_id"
        " LEFT JOIN features f ON f.id = b.feature_id"
        " LEFT JOIN test_features tf ON tf.id = b.test_feature_id"
        f" WHERE {where} GROUP BY b.feature_id ORDER BY 3 DESC, 1 LIMIT ?",
        [*params, limit],
    )
    return [
        {
            "feature_id": fid,
            "title": title or (NO_FEATURE if fid is None else f"feature {fid}"),
            "bugs": n,
            "rejected": int(rejected or 0),
            "rejection_rate": _round(int(rejected or 0) / n),
        }
        for fid, title, n, rejected in rows
    ]


def _month(months: dict[str, dict[str, Any]], month: str) -> dict[str, Any]:
    return months.setdefault(month, _empty(month))


def _empty(month: str) -> dict[str, Any]:
    return {"month": month, "tests": 0, "bugs": 0, "bugs_by_status": {}}


def _month_range(months: dict[str, dict[str, Any]]) -> list[str]:
    first, last = min(months), max(months)
    year, month = int(first[:4]), int(first[5:7])
    out = []
    while True:
        key = f"{year:04d}-{month:02d}"
        out.append(key)
        months.setdefault(key, _empty(key))
        if key >= last:
            return out
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


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
