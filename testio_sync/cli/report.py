"""``testio-sync report``: the product quality report on the terminal.

It prints the product quality report (the same numbers the MCP tool
returns) from the local mirror, refreshing only stale bugs of tests that can
still change. ``demo`` runs the whole system on the built-in simulator.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from testio_sync.cli import render
from testio_sync.cli.support import fail, open_service, reported_errors, settings_or_exit
from testio_sync.insights.report_text import report_lines
from testio_sync.settings import parse_product_ids


def _ids(values: list[str] | None, name: str) -> list[int] | None:
    if not values:
        return None
    from testio_sync.errors import ConfigError

    try:
        return list(parse_product_ids(",".join(values), source=name))
    except ConfigError as exc:
        fail(str(exc), 2)


def report(
    product_ids: Annotated[
        list[str],
        typer.Option("--product-ids", "-p", metavar="ID[,ID...]", help="Products (required)."),
    ],
    start_date: Annotated[
        str | None, typer.Option(help="First day (UTC) of the tests' end, YYYY-MM-DD.")
    ] = None,
    end_date: Annotated[
        str | None, typer.Option(help="Last day (UTC) of the tests' end, YYYY-MM-DD.")
    ] = None,
    statuses: Annotated[
        list[str] | None,
        typer.Option("--status", help="Test statuses (repeat); default: the executed ones."),
    ] = None,
    testing_type: Annotated[str | None, typer.Option(help="Only this testing type.")] = None,
    test_ids: Annotated[
        list[str] | None,
        typer.Option("--test-ids", metavar="ID[,ID...]", help="These tests instead of filters."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Print the product quality report from the local mirror (refresh it with `sync`).

    Tests and bugs by status and severity, rejection reasons, and the acceptance,
    rejection and review rates with a health word each; one block per product.

    Example:
        $ testio-sync report -p 598 --start-date 2026-01-01 --end-date 2026-03-31
    """
    from testio_sync.insights.filters import ReportFilters
    from testio_sync.insights.report import quality_report

    settings = settings_or_exit()
    with reported_errors():
        open_service(settings)
        filters = ReportFilters.parse(
            product_ids=_ids(product_ids, "--product-ids") or [],
            start_date=start_date,
            end_date=end_date,
            statuses=statuses,
            testing_type=testing_type,
            test_ids=_ids(test_ids, "--test-ids"),
        )
        data = asyncio.run(quality_report(filters, settings))
    if json_output:
        typer.echo(render.to_json(data))
        return
    for line in report_lines(data):
        typer.echo(line)
