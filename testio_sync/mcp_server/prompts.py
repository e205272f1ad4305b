"""The MCP prompts and the health-threshold resource: short guides for an assistant.

The prompts name the tools in the order that gives a trustworthy answer (fresh
data first, then the report, then the story behind the numbers); the resource
states the thresholds in force, so a health word can be explained, not guessed.
"""

from __future__ import annotations

import json

from testio_sync.insights.report import DEFAULT_THRESHOLDS, HealthThresholds
from testio_sync.insights.report_text import HEALTH_MEANING, RATE_LABELS

THRESHOLDS_URI = "testio://health-thresholds"

RATE_MEANINGS = {
    "active_acceptance_rate": "bugs accepted by a person / all bugs",
    "auto_acceptance_rate": "bugs accepted automatically (nobody reviewed them) / accepted bugs",
    "overall_acceptance_rate": "accepted bugs (by a person or automatically) / all bugs",
    "rejection_rate": "rejected bugs / all bugs",
    "review_rate": "bugs a person accepted or rejected / all bugs",
}

_FRESH_DATA = (
    "1. Call get_sync_status. If the product's tests were synced more than a day ago, or "
    "the data is older than the period's end, call sync_data with product_ids=[<id>] "
    "and wait for it (poll get_sync_status with the run_id if it answers running)."
)
_LATER_TOOLS = (
    "If the server lists query_metrics, ask it for the month-by-month rates over the period; "
    "if it lists search, look up bugs behind the worst feature or rejection reason."
)


def analyze_product_quality(product: str, period: str = "last 90 days", focus: str = "") -> str:
    """Lead an assistant through a quality analysis of one product over a period."""
    focus_line = f"Give most attention to: {focus}." if focus.strip() else ""
    return "\n".join(
        line
        for line in (
            f"Analyze the test quality of TestIO product {product} for {period}.",
            "Find the product id with list_products if you were given a name.",
            _FRESH_DATA,
            "2. Call get_product_quality_report with that product id and start_date/end_date "
            f"covering {period} (YYYY-MM-DD, UTC days of the tests' end).",
            f"3. {_LATER_TOOLS}",
            f"4. Read the resource {THRESHOLDS_URI} to explain every health word you cite.",
            focus_line,
            "Answer with: the headline rates and their health, what changed or stands out "
            "(features, severities, rejection reasons), and two or three concrete next steps. "
            "Quote data_as_of and never invent numbers the tools did not return.",
        )
        if line
    )


def prepare_ebr(product: str, period: str = "last quarter") -> str:
    """Lead an assistant to the numbers and talking points of an executive business review."""
    return "\n".join(
        (
            f"Prepare an executive business review (EBR) of TestIO product {product} for {period}.",
            "Find the product id with list_products if you were given a name.",
            _FRESH_DATA,
            "2. Call get_product_quality_report for the period, and again for the period "
            "before it of the same length, to compare.",
            f"3. {_LATER_TOOLS}",
            f"4. Read the resource {THRESHOLDS_URI} for what healthy, warning and critical mean.",
            "Write one page: the scope (tests, bugs, data_as_of); a table of the five rates "
            "with health, this period against the last; three wins, three risks, and the "
            "asks for the next period. Suggest `testio-sync report --format html` for a "
            "file with charts to hand on.",
        )
    )


def thresholds_document(thresholds: HealthThresholds = DEFAULT_THRESHOLDS) -> str:
    """The health thresholds in force and what each rate measures, as JSON."""
    bands = thresholds.bands()
    return json.dumps(
        {
            "rates": {
                rate: {
                    "label": label,
                    "measures": RATE_MEANINGS[rate],
                    **(bands.get(rate) or {"bad_when": None}),
                }
                for rate, label in RATE_LABELS.items()
            },
            "boundaries": "inclusive: a rate equal to a threshold already has its health word",
            "health_words": HEALTH_MEANING,
        },
        indent=1,
    )
