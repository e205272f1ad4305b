"""The product quality report as a readable table, for the terminal.

The MCP tool returns the report as data; people at a terminal (``testio-sync
report``, the demo) read this rendering of the same dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from testio_sync.dates import human_time

RATE_LABELS = {
    "active_acceptance_rate": "Active acceptance",
    "auto_acceptance_rate": "Auto acceptance",
    "overall_acceptance_rate": "Overall acceptance",
    "rejection_rate": "Rejection",
    "review_rate": "Review",
}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items()) or "none"


def _section(report: Mapping[str, Any], title: str) -> list[str]:
    lines = [
        title,
        f"  Tests: {report['total_tests']:,} ({_counts(report['tests_by_status'])})",
        f"  Testing types: {_counts(report['tests_by_testing_type'])}",
        f"  Bugs: {report['total_bugs']:,} ({report['avg_bugs_per_test']} per test)",
        f"    by status:   {_counts(report['bugs_by_status'])}",
        f"    by severity: {_counts(report['bugs_by_severity'])}",
    ]
    if report.get("rejected_by_reason"):
        lines.append(f"    rejected because: {_counts(report['rejected_by_reason'])}")
    lines.append(f"  {'Rate':<20}{'value':>8}  health")
    for key, label in RATE_LABELS.items():
        rate = report["rates"][key]
        lines.append(f"  {label:<20}{_percent(rate['value']):>8}  {rate['health']}")
    return lines


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """The whole report: the totals, then one block per product when there are several."""
    ids = ", ".join(map(str, report["product_ids"]))
    lines = _section(report, f"Quality report for product(s) {ids}")
    for product in report.get("products") or []:
        lines.append("")
        lines += _section(product, f"Product {product['product_id']}: {product['name']}")
    lines.append("")
    as_of = human_time(report["data_as_of"]) if report.get("data_as_of") else "never synced"
    lines.append(f"Data as of {as_of} (refresh it with: testio-sync sync)")
    for warning in report.get("warnings") or []:
        lines.append(f"Warning: {warning}")
    return lines
