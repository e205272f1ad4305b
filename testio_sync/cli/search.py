"""``testio-sync search``: full-text search of the local mirror, snippets highlighted."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from testio_sync.cli import render
from testio_sync.cli.support import ids_option, open_service, reported_errors, settings_or_exit
from testio_sync.insights import search as full_text

BOLD, RESET = "\x1b[1;33m", "\x1b[0m"


def search(
    query: Annotated[str, typer.Argument(help='Words; "quoted phrase"; last word a prefix.')],
    entities: Annotated[
        list[str] | None,
        typer.Option("--entity", "-e", help="product, feature, test or bug (repeat)."),
    ] = None,
    product_ids: Annotated[
        list[str] | None,
        typer.Option("--product-ids", "-p", metavar="ID[,ID...]", help="Only these products."),
    ] = None,
    start_date: Annotated[
        str | None, typer.Option(help="First day (UTC): test end or bug report.")
    ] = None,
    end_date: Annotated[str | None, typer.Option(help="Last day (UTC), inclusive.")] = None,
    limit: Annotated[int, typer.Option(help="Results per page (1-100).")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many results.")] = 0,
    raw: Annotated[
        bool, typer.Option("--raw", help="The query is FTS5 syntax (AND, OR, NOT, NEAR, x*).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Search products, features, tests and bugs in the local mirror, best match first.

    Example:
        $ testio-sync search "checkout crash" --entity bug --product-ids 598
    """
    settings = settings_or_exit()
    with reported_errors():
        request = full_text.SearchRequest.parse(
            query,
            mode="raw" if raw else "simple",
            entities=entities,
            product_ids=ids_option(product_ids),
            start_date=start_date,
            end_date=end_date,
            limit=limit,
            offset=offset,
        )
        open_service(settings)
        data = full_text.search(request)
    if json_output:
        typer.echo(render.to_json(data))
        return
    styled = sys.stdout.isatty()
    for hit in data["results"]:
        when = f"  {hit['date']}" if "date" in hit else ""
        typer.echo(
            f"{hit['entity']} {hit['id']}  {hit['title']}  (product {hit['product_id']}{when})"
        )
        snippet = hit["snippet"]
        typer.echo("    " + (full_text.mark_terminal(snippet, BOLD, RESET) if styled else snippet))
    shown = (
        f"{data['offset'] + 1}-{data['offset'] + len(data['results'])}" if data["results"] else "0"
    )
    more = f"; next page: --offset {data['next_offset']}" if "next_offset" in data else ""
    typer.echo(
        f"{shown} of {render.plural(data['total'], 'matches')}{more}; data as of "
        f"{data['data_as_of'] or 'never synced'}"
    )
