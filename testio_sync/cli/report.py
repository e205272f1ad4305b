"""``testio-sync report``: the product quality report as text, HTML, CSV, JSON or Markdown.

It renders the product quality report (the same numbers the MCP tool returns)
from the local mirror, refreshing only stale bugs of tests that can still
change, to the terminal or to a file to hand on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from testio_sync.cli.support import (
    EXIT_USAGE,
    ProductIdsOption,
    fail,
    ids_option,
    open_service,
    reported_errors,
    settings_or_exit,
)
from testio_sync.settings import Settings


def _products(given: list[int] | None, settings: Settings) -> list[int]:
    """The products asked for; else TESTIO_PRODUCT_IDS; else every stored product."""
    if given:
        return given
    if settings.product_ids:
        return list(settings.product_ids)
    from testio_sync.store import queries

    stored = queries.product_ids()
    if not stored:
        fail("No products in the local mirror yet; fetch them with `testio-sync sync`.", 1)
    return stored


def _render(fmt: str, data: dict[str, Any], filters: Any) -> str:
    from testio_sync.insights import report_export

    if fmt == "json":
        return report_export.to_json(data)
    if fmt == "csv":
        return report_export.to_csv(data)
    if fmt == "md":
        return report_export.to_markdown(data)
    if fmt == "html":
        from testio_sync.insights.report_html import render_html
        from testio_sync.insights.series import chart_series

        return render_html(data, chart_series(filters))
    from testio_sync.insights.report_text import report_lines

    return "\n".join(report_lines(data)) + "\n"


def report(
    product_ids: ProductIdsOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DAY", help="Tests that ended on or after this day: 90d, 2w, 2026-01-31."
        ),
    ] = None,
    start_date: Annotated[
        str | None,
        typer.Option(metavar="DAY", help="First day (UTC) of the tests' end, YYYY-MM-DD."),
    ] = None,
    end_date: Annotated[
        str | None,
        typer.Option(metavar="DAY", help="Last day (UTC) of the tests' end, YYYY-MM-DD."),
    ] = None,
    statuses: Annotated[
        list[str] | None,
        typer.Option(
            "--status", metavar="STATUS", help="Test statuses (repeat); default: the executed ones."
        ),
    ] = None,
    testing_type: Annotated[
        str | None, typer.Option(metavar="TYPE", help="Only this testing type.")
    ] = None,
    test_ids: Annotated[
        list[str] | None,
        typer.Option("--test-ids", metavar="ID[,ID...]", help="These tests instead of filters."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", metavar="FORMAT", help="text, html, csv, json or md."),
    ] = "text",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write here (html needs it)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Print or write the product quality report from the local mirror.

    Tests and bugs by status and severity, rejection reasons, and the acceptance,
    rejection and review rates with a health word each; one block per product.
    The HTML file is self-contained (charts inside, no network) and prints on A4.
    Stale bugs of tests that can still change are refreshed first; refresh the
    rest with `testio-sync sync --with-bugs`.

    Example:
        $ testio-sync report -p 117 --since 90d --format html -o quality.html
    """
    from testio_sync.insights.filters import ReportFilters
    from testio_sync.insights.report import quality_report
    from testio_sync.insights.report_export import FORMATS

    fmt = "json" if json_output else fmt.strip().lower()
    if fmt not in FORMATS:
        fail(f"--format: unknown {fmt!r}; use {', '.join(FORMATS)}", EXIT_USAGE)
    if fmt == "html" and output is None:
        fail("--format html writes a file: add --output FILE", EXIT_USAGE)
    if since and start_date:
        fail("--since and --start-date both set the first day: give one", EXIT_USAGE)
    settings = settings_or_exit()
    with reported_errors():
        open_service(settings)
        filters = ReportFilters.parse(
            product_ids=_products(ids_option(product_ids), settings),
            start_date=since or start_date,
            end_date=end_date,
            statuses=statuses,
            testing_type=testing_type,
            test_ids=ids_option(test_ids, "--test-ids"),
        )
        data = asyncio.run(quality_report(filters, settings))
        text = _render(fmt, data, filters)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", 1)
    typer.echo(f"Wrote the {fmt} report to {output}", err=True)
