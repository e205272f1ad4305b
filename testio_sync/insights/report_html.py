"""The quality report as one self-contained HTML file, to send or print.

Everything the page needs is inside it: CSS inline, charts as SVG data URIs,
the system's own fonts. A Content-Security-Policy in the page forbids any
request but ``data:`` images, so opening it never reaches the network. It
prints on A4 (one product per page) and its grids fold to one column on a phone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from testio_sync.dates import human_time
from testio_sync.insights import charts
from testio_sync.insights import report_text as words
from testio_sync.insights.report import DEFAULT_THRESHOLDS, HealthThresholds
from testio_sync.insights.report_export import product_sections

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --ink:#263238; --muted:#607d8b; --line:#eceff1; --card:#f7f9fa;
  --healthy:#2e7d32; --warning:#b26a00; --critical:#c62828; --unknown:#78909c; }
* { box-sizing:border-box; }
body { margin:0; color:var(--ink); background:#fff;
  font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif; }
main { max-width:980px; margin:0 auto; padding:24px 20px 40px; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:19px; margin:32px 0 8px; padding-bottom:4px; border-bottom:2px solid var(--line); }
h3 { font-size:15px; margin:20px 0 6px; color:var(--muted); font-weight:600; }
.products { font-size:17px; margin:0 0 12px; }
dl.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:0;
  font-size:13px; color:var(--muted); }
dl.meta dt { font-weight:600; }
dl.meta dd { margin:0; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(122px,1fr)); gap:10px;
  margin:14px 0; }
.card { background:var(--card); border-radius:8px; padding:10px 12px;
  border-left:5px solid var(--line); }
.card .label { font-size:12px; color:var(--muted); text-transform:uppercase;
  letter-spacing:.03em; }
.card .value { font-size:24px; font-weight:700; }
.card .note { font-size:12px; color:var(--muted); }
.card.healthy { border-left-color:var(--healthy); }
.card.warning { border-left-color:var(--warning); }
.card.critical { border-left-color:var(--critical); }
.card.unknown { border-left-color:var(--unknown); }
.word { font-size:12px; font-weight:700; text-transform:uppercase; }
.word.healthy { color:var(--healthy); } .word.warning { color:var(--warning); }
.word.critical { color:var(--critical); } .word.unknown { color:var(--unknown); }
figure { margin:8px 0 4px; break-inside:avoid; }
figure img { display:block; width:100%; height:auto; }
figure.wide { overflow-x:auto; }
.grid3 { display:grid; grid-template-columns:repeat(3,1fr); gap:10px; }
.caption, .empty { font-size:13px; color:var(--muted); }
footer { margin-top:32px; font-size:13px; color:var(--muted);
  border-top:1px solid var(--line); padding-top:10px; }
.warn { color:var(--critical); }
@media (max-width:640px) {
  main { padding:16px 12px 32px; }
  .grid3 { grid-template-columns:1fr; }
  figure.wide img { min-width:600px; }
  .card .value { font-size:20px; }
}
@page { size:A4; margin:14mm 12mm; }
@media print {
  body { font-size:11px; -webkit-print-color-adjust:exact; print-color-adjust:exact; }
  main { max-width:none; padding:0; }
  h2 { margin-top:18px; }
  .product { break-before:page; }
  .cards { grid-template-columns:repeat(4,1fr); }
  .charts-block { break-inside:avoid; }
}
"""


def render_html(
    report: Mapping[str, Any],
    series: Mapping[str, Any],
    *,
    thresholds: HealthThresholds = DEFAULT_THRESHOLDS,
    generated_at: datetime | None = None,
) -> str:
    """The whole page for a report and its chart series (``series.chart_series``)."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Quality report: {words.products_text(report)}"
    several = len(report["product_ids"]) > 1
    body = [
        "<header>",
        "<h1>Quality report</h1>",
        f'<p class="products">{escape(words.products_text(report))}</p>',
        '<dl class="meta">',
        *_meta(report),
        "</dl>",
        "</header>",
        f"<h2>{'All products' if several else 'Headline'}</h2>",
        _cards(report, thresholds),
        *_charts(report, series["monthly"], thresholds),
        *_breakdowns(report, series["top_features"]),
    ]
    if several:
        for section in product_sections(report):
            monthly = series["products"][section["product_id"]]["monthly"]
            body += [
                '<section class="product">',
                f"<h2>{escape(section.get('name') or 'Product')} ({section['product_id']})</h2>",
                _cards(section, thresholds),
                *_charts(section, monthly, thresholds),
                "</section>",
            ]
    body.append(_footer(report, when))
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body><main>",
            *body,
            "</main></body>",
            "</html>",
            "",
        ]
    )


def _meta(report: Mapping[str, Any]) -> list[str]:
    filters = report.get("filters") or {}
    rows = [("Period", words.period_text(report))]
    if filters.get("statuses"):
        rows.append(("Test statuses", ", ".join(filters["statuses"])))
    if filters.get("testing_type"):
        rows.append(("Testing type", filters["testing_type"]))
    rows.append(("Data as of", _as_of(report)))
    return [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows]


def _as_of(report: Mapping[str, Any]) -> str:
    return human_time(report["data_as_of"]) if report.get("data_as_of") else "never synced"


def _card(label: str, value: str, note: str = "", health: str = "") -> str:
    word = f' <span class="word {health}">{health}</span>' if health else ""
    return (
        f'<div class="card {health}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}{word}</div>'
        f'<div class="note">{escape(note)}</div></div>'
    )


def _cards(section: Mapping[str, Any], thresholds: HealthThresholds) -> str:
    buckets = words.bug_buckets(section)
    bug_note = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in buckets.items())
    cards = [
        _card("Tests", f"{section['total_tests']:,}"),
        _card("Bugs", f"{section['total_bugs']:,}", words.bugs_per_test(section)),
    ]
    for rate, label in words.RATE_LABELS.items():
        value = section["rates"][rate]
        cards.append(
            _card(
                label,
                words.percent(value["value"]),
                _pretty(words.threshold_text(rate, thresholds)),
                value["health"],
            )
        )
    return (
        f'<div class="cards">{"".join(cards)}</div>'
        f'<p class="caption">Bugs by status: {escape(bug_note)}</p>'
    )


def _pretty(thresholds: str) -> str:
    if thresholds == "-":
        return "no thresholds"
    return thresholds.replace(">=", "≥").replace("<=", "≤")


def _img(svg: str, alt: str, *, wide: bool = True) -> str:
    # Percent-encoded rather than base64: a third smaller, and still one attribute.
    src = "data:image/svg+xml," + quote(svg, safe=" /:=;,.-_()'!*+~@$?<>{}[]")
    kind = ' class="wide"' if wide else ""
    return f'<figure{kind}><img class="chart" alt="{escape(alt)}" src="{src}"></figure>'


def _charts(
    section: Mapping[str, Any], monthly: Mapping[str, Any], thresholds: HealthThresholds
) -> list[str]:
    months = monthly["months"]
    if not months:
        return ['<p class="empty">No test in scope has an end date, so no monthly charts.</p>']
    present = [b for b in words.ALL_BUCKETS if any(m["bugs_by_status"].get(b) for m in months)]
    out = [
        '<div class="charts-block">',
        "<h3>Bugs per month (by the month the test ended, UTC), by status</h3>",
        _img(charts.monthly_bugs(months, present), "Bugs per month, stacked by status"),
        "</div>",
        '<div class="charts-block">',
        "<h3>Rates per month, over their warning (yellow) and critical (red) bands</h3>",
        '<div class="grid3">',
    ]
    for rate in charts.RATE_TITLES:
        alt = f"{words.RATE_LABELS[rate]} rate per month"
        out.append(_img(charts.monthly_rate(rate, months, thresholds), alt, wide=False))
    out += ["</div>", "</div>"]
    if monthly.get("tests_without_end"):
        out.append(
            f'<p class="caption">{monthly["tests_without_end"]} test(s) without an end date '
            "are counted above but are in no month.</p>"
        )
    return out


def _breakdowns(report: Mapping[str, Any], features: list[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    severity = report["bugs_by_severity"]
    if severity:
        out += [
            '<div class="charts-block">',
            "<h2>Bugs by severity</h2>",
            _img(
                charts.horizontal_bars(severity, colors=charts.SEVERITY_COLORS),
                "Bugs by severity",
            ),
            "</div>",
        ]
    if features:
        counts: dict[str, int] = {}
        notes: dict[str, str] = {}
        for feature in features:
            key = feature["title"]
            if key in counts:
                key = f"{key} (#{feature['feature_id']})"
            counts[key] = feature["bugs"]
            notes[key] = f"{words.percent(feature['rejection_rate'])} rejected"
        out += [
            '<div class="charts-block">',
            f"<h2>Top {len(features)} features by bugs, with their rejection rate</h2>",
            _img(
                charts.horizontal_bars(
                    counts, notes=notes, colors=dict.fromkeys(counts, "#455a64")
                ),
                "Features with the most bugs",
            ),
            "</div>",
        ]
    reasons = report["rejected_by_reason"]
    if reasons:
        out += [
            '<div class="charts-block">',
            "<h2>Why bugs were rejected</h2>",
            _img(
                charts.horizontal_bars(reasons, colors=dict.fromkeys(reasons, "#c62828")),
                "Rejected bugs by reason",
            ),
            "</div>",
        ]
    return out


def _footer(report: Mapping[str, Any], when: str) -> str:
    warnings = "".join(
        f'<p class="warn">Warning: {escape(w)}</p>' for w in report.get("warnings") or []
    )
    return (
        f"<footer>{warnings}<p>{escape(words.HEALTH_MEANING)}</p>"
        f"<p>Data as of {escape(_as_of(report))}; "
        f"{escape(words.REFRESH_HINT)}. Written by testio-sync on {when}.</p></footer>"
    )
