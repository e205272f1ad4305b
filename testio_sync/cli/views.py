"""``testio-sync show`` and ``list``: the entity views of the local mirror.

The same functions answer the MCP tools (``insights.views``); here their dicts
print as indented text, or as JSON with ``--json``. Reads only: never waits for
a running sync.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from testio_sync.cli import render
from testio_sync.cli.support import (
    EXIT_USAGE,
    fail,
    ids_option,
    open_service,
    reported_errors,
    settings_or_exit,
)
from testio_sync.insights import views

SHOWN = ("bug", "feature", "user", "product")
LISTED = ("features", "users")


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items() if v not in (None, [], {}))
    if isinstance(value, list):
        return "; ".join(_scalar(v) for v in value)
    return "-" if value is None else str(value)


def text_lines(data: dict[str, Any], indent: str = "") -> list[str]:
    """A view as indented ``key: value`` lines; lists of records one per line."""
    lines: list[str] = []
    for key, value in data.items():
        label = key.replace("_", " ")
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{label}:")
            lines.extend(f"{indent}  - {_scalar(item)}" for item in value)
        elif isinstance(value, dict) and value and any(isinstance(v, dict) for v in value.values()):
            lines.append(f"{indent}{label}:")
            lines.extend(text_lines(value, indent + "  "))
        elif isinstance(value, list) and value and key == "steps":
            lines.append(f"{indent}{label}:")
            lines.extend(f"{indent}  {n}. {step}" for n, step in enumerate(value, 1))
        else:
            lines.append(f"{indent}{label}: {_scalar(value)}")
    return lines


def _emit(data: dict[str, Any], json_output: bool) -> None:
    if json_output:
        typer.echo(render.to_json(data))
        return
    for line in text_lines(data):
        typer.echo(line)


def _whole(kind: str, key: str) -> int:
    try:
        value = int(key)
    except ValueError:
        fail(f"{kind} id must be a whole number, not {key!r}", EXIT_USAGE)
    if value <= 0:
        fail(f"{kind} id must be positive, not {value}", EXIT_USAGE)
    return value


def show(
    kind: Annotated[str, typer.Argument(metavar="bug|feature|user|product", help="What to show.")],
    key: Annotated[str, typer.Argument(metavar="ID", help="Its id (a user: the name).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """Show one bug, feature, user or product from the local mirror, in full.

    Example:
        $ testio-sync show bug 1000008 && testio-sync show user "Carla Ro."
    """
    if kind not in SHOWN:
        fail(f"show: use {', '.join(SHOWN)}, not {kind!r}", EXIT_USAGE)
    settings = settings_or_exit()
    with reported_errors():
        open_service(settings)
        if kind == "user":
            data = views.user_summary(key)
        else:
            view = {
                "bug": views.bug_summary,
                "feature": views.feature_summary,
                "product": views.product_summary,
            }[kind]
            data = view(_whole(kind, key))
    _emit(data, json_output)


def list_(
    kind: Annotated[str, typer.Argument(metavar="features|users", help="What to list.")],
    product_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--product-ids", "-p", metavar="ID[,ID...]", help="Products (features: exactly one)."
        ),
    ] = None,
    user_kind: Annotated[
        str | None, typer.Option("--kind", help="Users: tester or customer.")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Users: active in the last N days.")] = None,
    sort_by: Annotated[
        str | None,
        typer.Option(help="features: title, tests, bugs; users: activity, name, last_seen."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows per page (1-100).")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many rows.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List a product's features, or testers and customer users, with their counts.

    Example:
        $ testio-sync list features -p 598 --sort-by bugs && testio-sync list users --days 30
    """
    if kind not in LISTED:
        fail(f"list: use {', '.join(LISTED)}, not {kind!r}", EXIT_USAGE)
    ids = ids_option(product_ids)
    settings = settings_or_exit()
    with reported_errors():
        open_service(settings)
        if kind == "features":
            if not ids or len(ids) != 1:
                fail("list features: give exactly one product with --product-ids", EXIT_USAGE)
            data = views.list_features(
                ids[0], sort_by=sort_by or "title", limit=limit, offset=offset
            )
        else:
            data = views.list_users(
                kind=user_kind,
                days=days,
                product_ids=ids,
                sort_by=sort_by or "activity",
                limit=limit,
                offset=offset,
            )
    _emit(data, json_output)
