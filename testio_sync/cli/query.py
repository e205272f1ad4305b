"""``testio-sync query``: registry metrics by dimensions, from the local mirror.

The same engine and validation as the MCP tool ``query_metrics``: a table on
the terminal, ``--json`` or ``--csv`` for scripts, ``--chart`` for a bar chart
of one metric over one dimension, ``--list`` for the registry.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from testio_sync.cli import render
from testio_sync.cli.support import (
    EXIT_USAGE,
    ProductIdsOption,
    fail,
    ids_option,
    open_service,
    reported_errors,
    settings_or_exit,
)
from testio_sync.insights.metrics_registry import DIMENSIONS, METRICS, registry

BAR_WIDTH = 40
_NONE = "-"


def parse_filters(items: Sequence[str]) -> dict[str, Any]:
    """``severity=critical,high`` items to ``{"severity": ["critical", "high"]}``.

    A key given twice gathers its values. Raises ``typer.Exit`` (usage) on an item
    without ``=``.
    """
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--filter: use NAME=VALUE[,VALUE...], not {item!r}", EXIT_USAGE)
        values = [v.strip() for v in value.split(",") if v.strip()]
        out.setdefault(key.strip(), []).extend(values)
    return {key: values[0] if len(values) == 1 else values for key, values in out.items()}


def _base(name: str) -> tuple[str, str]:
    """A column's metric and suffix: ``rejection_rate_change`` is (rejection_rate, change)."""
    for suffix in ("_previous", "_change"):
        if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
            return name[: -len(suffix)], suffix[1:]
    return name, ""


def _cell(name: str, value: Any) -> str:
    if value is None:
        return _NONE
    base, suffix = _base(name)
    sign = "+" if suffix == "change" else ""
    metric = METRICS.get(base)
    if metric is None:
        return ("yes" if value else "no") if isinstance(value, bool) else str(value)
    if metric.digits == 4:
        return f"{value:{sign}.1%}"
    if isinstance(value, float):
        return f"{value:{sign},.2f}"
    return f"{value:{sign},}"


def _columns(answer: dict[str, Any]) -> list[str]:
    return (
        list(answer["rows"][0]) if answer["rows"] else [*answer["dimensions"], *answer["metrics"]]
    )


def table_text(answer: dict[str, Any], console: Console) -> None:
    """The rows as a rich table, then how many rows there are and how fresh the data is."""
    table = Table(show_lines=False)
    columns = _columns(answer)
    for name in columns:
        numeric = _base(name)[0] in METRICS
        table.add_column(name, justify="right" if numeric else "left")
    for row in answer["rows"]:
        table.add_row(*(_cell(name, row.get(name)) for name in columns))
    console.print(table)
    shown, total = len(answer["rows"]), answer["total_rows"]
    more = f" (showing {shown}; raise --limit for more)" if shown < total else ""
    as_of = render.format_time(answer["data_as_of"]) if answer.get("data_as_of") else "unknown"
    console.print(f"{total:,} row(s){more}. Data as of {as_of}.")


def chart_lines(answer: dict[str, Any]) -> list[str]:
    """A horizontal bar chart of the one metric over the one dimension."""
    dim, metric = answer["dimensions"][0], answer["metrics"][0]
    label_key = DIMENSIONS[dim].label
    rows = answer["rows"]
    labels = [
        str(row[label_key] if label_key and row.get(label_key) else row[dim] or _NONE)
        for row in rows
    ]
    values = [row[metric] or 0 for row in rows]
    top = max(values, default=0) or 1
    width = max((len(label) for label in labels), default=0)
    lines = [f"{metric} by {dim}"]
    for label, value, row in zip(labels, values, rows, strict=True):
        bar = "█" * round(BAR_WIDTH * value / top)
        lines.append(f"{label:>{width}} │{bar} {_cell(metric, row[metric])}")
    return lines


def registry_lines() -> list[str]:
    data = registry()
    lines = ["Dimensions (--by, --filter NAME=VALUE):"]
    lines += [f"  {name:18} {text}" for name, text in data["dimensions"].items()]
    lines.append("Metrics (--metric):")
    lines += [f"  {name:24} {text}" for name, text in data["metrics"].items()]
    lines.append(data["notes"])
    return lines


def csv_text(answer: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(answer), lineterminator="\n")
    writer.writeheader()
    writer.writerows(answer["rows"])
    return buffer.getvalue()


def query(
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="A metric (repeat); see --list."),
    ] = None,
    by: Annotated[
        list[str] | None, typer.Option("--by", "-b", help="A dimension (repeat, at most 3).")
    ] = None,
    product_ids: ProductIdsOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", "--start-date", help="First day of the tests' end: 2026-01-31, 90d."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", "--end-date", help="Last day of the tests' end.")
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", metavar="NAME=VALUE[,VALUE]", help="Filter (repeat)."),
    ] = None,
    sort_by: Annotated[str | None, typer.Option(help="A requested metric or dimension.")] = None,
    sort_order: Annotated[str | None, typer.Option(help="asc or desc.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show (1..1000).")] = 100,
    compare_previous: Annotated[
        bool, typer.Option("--compare-previous", help="Add the previous period and the change.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print the rows as CSV.")] = False,
    chart: Annotated[
        bool, typer.Option("--chart", help="Bar chart (one --metric, one --by).")
    ] = False,
    list_registry: Annotated[
        bool, typer.Option("--list", help="List the dimensions and metrics.")
    ] = False,
) -> None:
    """Metrics by up to 3 dimensions from the local mirror (refresh it with `sync`).

    Dates and time dimensions use the test's end (UTC); tests default to the
    executed statuses unless --filter test_status=... is given, as in `report`.

    Example:
        $ testio-sync query -m bug_count -m rejection_rate --by feature --by month \\
              -p 598 --since 90d
    """
    if list_registry:
        for line in registry_lines():
            typer.echo(line)
        return
    if json_output and csv_output:
        fail("--json and --csv exclude each other", EXIT_USAGE)
    if chart and (len(metric or []) != 1 or len(by or []) != 1):
        fail("--chart draws one --metric over one --by", EXIT_USAGE)
    from testio_sync.insights.analytics import MetricsQuery, run_query

    settings = settings_or_exit()
    with reported_errors():
        ids = list(settings.product_ids or ()) or None  # TESTIO_PRODUCT_IDS, as `report`
        if product_ids:
            ids = ids_option(product_ids)
        request = MetricsQuery.parse(
            metric or [],
            by or [],
            parse_filters(filters or []),
            start_date=since,
            end_date=until,
            sort_by=sort_by,
            sort_order=sort_order,
            limit=limit,
            compare_previous=compare_previous,
            product_ids=ids,
        )
        open_service(settings)
        answer = run_query(request)
    if json_output:
        typer.echo(render.to_json(answer))
    elif csv_output:
        typer.echo(csv_text(answer), nl=False)
    elif chart:
        for line in chart_lines(answer):
            typer.echo(line)
    else:
        table_text(answer, Console())
