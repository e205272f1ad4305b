"""The product quality report as a readable table, for the terminal.

The MCP tool returns the report as data; people at a terminal (``testio-sync
report``, the demo) read this rendering of the same dict. The wording helpers
here (period, products, thresholds) are shared by the other renderings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from testio_sync.dates import human_time
from testio_sync.insights.report import BUG_BUCKETS, DEFAULT_THRESHOLDS, HealthThresholds

RATE_LABELS = {
    "active_acceptance_rate": "Active acceptance",
    "auto_acceptance_rate": "Auto acceptance",
    "overall_acceptance_rate": "Overall acceptance",
    "rejection_rate": "Rejection",
    "review_rate": "Review",
}
HEALTH_MEANING = (
    "Health words: healthy = inside the thresholds, warning = at or past the warning "
    "threshold, critical = at or past the critical one, unknown = no bugs to rate."
)
REFRESH_HINT = "refresh tests and bugs with: testio-sync sync --with-bugs"
ALL_BUCKETS = (*(b for b in BUG_BUCKETS if b != "unknown"), "unknown")
"""Every bug bucket a rendering can show, ``unknown`` (bugs without a status) last."""


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def threshold_text(rate: str, thresholds: HealthThresholds = DEFAULT_THRESHOLDS) -> str:
    """``warning >= 20%, critical >= 35%`` (or ``<=`` when low is bad); ``-`` when none."""
    band = thresholds.bands().get(rate)
    if band is None:
        return "-"
    sign = ">=" if band["bad_when"] == "high" else "<="
    return f"warning {sign} {band['warning']:.0%}, critical {sign} {band['critical']:.0%}"


def bug_buckets(report: Mapping[str, Any]) -> dict[str, int]:
    """The bug counts per bucket to show: the four buckets, plus ``unknown`` when not 0."""
    counts = report["bugs_by_status"]
    shown = {bucket: counts.get(bucket, 0) for bucket in ALL_BUCKETS[:-1]}
    if counts.get("unknown", 0):
        shown["unknown"] = counts["unknown"]
    return shown


def bugs_per_test(report: Mapping[str, Any]) -> str:
    avg = report.get("avg_bugs_per_test")
    return "no tests" if avg is None else f"{avg} per test"


def period_text(report: Mapping[str, Any]) -> str:
    """Which tests by end date, in words."""
    filters = report.get("filters") or {}
    if "test_ids" in filters:
        return f"{len(filters['test_ids'])} chosen test(s)"
    start, end = filters.get("start_date"), filters.get("end_date")
    if start and end:
        return f"tests ending {start} to {end} (UTC)"
    if start:
        return f"tests ending on or after {start} (UTC)"
    if end:
        return f"tests ending up to {end} (UTC)"
    return "all stored tests"


def products_text(report: Mapping[str, Any]) -> str:
    names = report.get("product_names") or {}
    return ", ".join(f"{names.get(str(pid)) or 'product'} ({pid})" for pid in report["product_ids"])


def scope_lines(report: Mapping[str, Any]) -> list[str]:
    """What the report counts: period, test statuses and testing type."""
    filters = report.get("filters") or {}
    lines = [f"Period: {period_text(report)}"]
    if filters.get("statuses"):
        lines.append(f"Counts tests in status: {', '.join(filters['statuses'])}")
    if filters.get("testing_type"):
        lines.append(f"Testing type: {filters['testing_type']}")
    return lines


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items()) or "none"


def _section(report: Mapping[str, Any], title: str, thresholds: HealthThresholds) -> list[str]:
    lines = [
        title,
        f"  Tests: {report['total_tests']:,} ({_counts(report['tests_by_status'])})",
        f"  Testing types: {_counts(report['tests_by_testing_type'])}",
        f"  Bugs: {report['total_bugs']:,} ({bugs_per_test(report)})",
        f"    by status:   {_counts(bug_buckets(report))}",
        f"    by severity: {_counts(report['bugs_by_severity'])}",
    ]
    if report.get("rejected_by_reason"):
        lines.append(f"    rejected because: {_counts(report['rejected_by_reason'])}")
    lines.append(f"  {'Rate':<20}{'value':>8}  {'health':<9} thresholds")
    for key, label in RATE_LABELS.items():
        rate = report["rates"][key]
        lines.append(
            f"  {label:<20}{percent(rate['value']):>8}  {rate['health']:<9} "
            f"{threshold_text(key, thresholds)}"
        )
    return lines


def report_lines(
    report: Mapping[str, Any], thresholds: HealthThresholds = DEFAULT_THRESHOLDS
) -> list[str]:
    """The whole report: the totals, then one block per product when there are several."""
    lines = [f"Quality report for {products_text(report)}", *scope_lines(report), ""]
    lines += _section(report, "All products" if report.get("products") else "Totals", thresholds)
    for product in report.get("products") or []:
        lines.append("")
        title = f"Product {product['product_id']}: {product['name']}"
        lines += _section(product, title, thresholds)
    lines += ["", HEALTH_MEANING]
    as_of = human_time(report["data_as_of"]) if report.get("data_as_of") else "never synced"
    lines.append(f"Data as of {as_of} ({REFRESH_HINT})")
    for warning in report.get("warnings") or []:
        lines.append(f"Warning: {warning}")
    return lines
