"""The quality report as files to hand on: JSON, CSV, Markdown (HTML in ``report_html``).

Every format renders the one dict ``quality_report`` returns (the MCP tool's
structured answer), so an export can never disagree with the tool. The CSV has
one row per product and report period; buckets and rates are flat columns.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from testio_sync.insights.report import DEFAULT_THRESHOLDS, HealthThresholds
from testio_sync.insights.report_text import (
    ALL_BUCKETS,
    HEALTH_MEANING,
    RATE_LABELS,
    REFRESH_HINT,
    bug_buckets,
    bugs_per_test,
    percent,
    products_text,
    scope_lines,
    threshold_text,
)

FORMATS = ("text", "html", "csv", "json", "md")


def product_sections(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One section per product: the breakdown when several, else the report itself."""
    if report.get("products"):
        return list(report["products"])
    pid = report["product_ids"][0]
    name = (report.get("product_names") or {}).get(str(pid))
    return [{"product_id": pid, "name": name, **report}]


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def to_csv(report: Mapping[str, Any]) -> str:
    """One row per product: period, counts per bucket, each rate with its health word."""
    filters = report.get("filters") or {}
    header = [
        "product_id",
        "product_name",
        "start_date",
        "end_date",
        "statuses",
        "testing_type",
        "total_tests",
        "total_bugs",
        *(f"bugs_{b}" for b in ALL_BUCKETS),
        *(column for rate in RATE_LABELS for column in (rate, f"{rate}_health")),
        "data_as_of",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for section in product_sections(report):
        rates = section["rates"]
        writer.writerow(
            [
                section["product_id"],
                section.get("name") or "",
                filters.get("start_date", ""),
                filters.get("end_date", ""),
                " ".join(filters.get("statuses") or []),
                filters.get("testing_type", ""),
                section["total_tests"],
                section["total_bugs"],
                *(section["bugs_by_status"].get(b, 0) for b in ALL_BUCKETS),
                *(
                    cell
                    for rate in RATE_LABELS
                    for cell in (_blank(rates[rate]["value"]), rates[rate]["health"])
                ),
                section.get("data_as_of") or "",
            ]
        )
    return out.getvalue()


def _blank(value: float | None) -> str | float:
    return "" if value is None else value


def to_markdown(
    report: Mapping[str, Any], thresholds: HealthThresholds = DEFAULT_THRESHOLDS
) -> str:
    """A Markdown document: scope, then per product a rate table and the breakdowns."""
    lines = [f"# Quality report: {products_text(report)}", ""]
    lines += [f"- {line}" for line in scope_lines(report)]
    lines += [f"- Data as of: {report.get('data_as_of') or 'never synced'}", ""]
    sections = product_sections(report)
    if len(sections) > 1:
        lines += _md_section(report, "All products", thresholds)
    for section in sections:
        title = f"{section.get('name') or 'Product'} ({section['product_id']})"
        lines += _md_section(section, title, thresholds)
    lines += [HEALTH_MEANING, "", f"To update the data, {REFRESH_HINT}.", ""]
    lines += [f"> Warning: {w}" for w in report.get("warnings") or []]
    return "\n".join(lines).rstrip() + "\n"


def _md_section(section: Mapping[str, Any], title: str, thresholds: HealthThresholds) -> list[str]:
    lines = [
        f"## {title}",
        "",
        f"Tests: {section['total_tests']:,}. Bugs: {section['total_bugs']:,} "
        f"({bugs_per_test(section)}).",
        "",
        "| rate | value | health | thresholds |",
        "| --- | ---: | --- | --- |",
    ]
    for rate, label in RATE_LABELS.items():
        value = section["rates"][rate]
        lines.append(
            f"| {label} | {percent(value['value'])} | {value['health']} | "
            f"{threshold_text(rate, thresholds)} |"
        )
    lines.append("")
    for heading, counts in (
        ("Bugs by status", bug_buckets(section)),
        ("Bugs by severity", section["bugs_by_severity"]),
        ("Rejected because", section["rejected_by_reason"]),
    ):
        if counts:
            lines.append(f"{heading}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
            lines.append("")
    return lines
