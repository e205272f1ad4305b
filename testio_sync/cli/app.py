"""``testio-sync``: the command line over ``SyncService``.

Each command parses its flags, calls the service and prints: text on stdout,
``--json`` for scripts, progress and logs on stderr. A ``TestioSyncError``
becomes one ``Error: ...`` line on stderr and a documented exit code, never a
traceback. Commands register on ``app`` (one module per command group);
this module registers each with ``app.command()(function)``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from testio_sync.cli.backups import backups
from testio_sync.cli.db import DB_HELP
from testio_sync.cli.db import copy as db_copy
from testio_sync.cli.demo import demo
from testio_sync.cli.query import query
from testio_sync.cli.report import report
from testio_sync.cli.search import search
from testio_sync.cli.serve import serve, worker
from testio_sync.cli.simulate import SIMULATE_SETTINGS, simulate
from testio_sync.cli.status import restore, status
from testio_sync.cli.sync import sync
from testio_sync.cli.views import list_, show

APP_HELP = """Keep a local SQLite mirror of the TestIO Customer API fresh.

Settings come from the environment: TESTIO_CUSTOMER_API_TOKEN,
TESTIO_CUSTOMER_API_BASE_URL, TESTIO_SYNC_HOME (default ~/.testio-sync),
TESTIO_PRODUCT_IDS (default product filter) and the other TESTIO_* variables.

Exit codes:
0    success
1    failed: API refused, unreachable or not found, or the run died
2    usage error: bad flags or settings; nothing was changed
3    partial: the sync finished with errors
4    timed out waiting for the sync lock another sync holds
5    sync --timeout ran out (a worker's run goes on; a run in this process stopped)
130  interrupted (Ctrl-C)

Example:
    $ testio-sync sync --since 30d && testio-sync status
"""


class _UntypedArgument(TyperArgument):
    """An argument shown by its name alone: typer would add ``<str>`` or ``<path>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def plain_help(params: list[Any]) -> list[Any]:
    """Parameters as ``--help`` should show them: names and metavars, no ``<bool>``.

    typer prints each parameter's Python type; a flag then reads ``--json <bool>``
    and an optional argument whose metavar has brackets ``[[BACKUP]]``. Flags get
    no metavar, valued options their flag in capitals (``--status STATUS``; choices
    keep ``a|b``), and arguments their bare name.
    """
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar:
                param.metavar = param.metavar.strip("[]")
            if type(param) is TyperArgument:
                param.__class__ = _UntypedArgument
        elif isinstance(param, TyperOption) and param.metavar is None:
            if param.is_flag or param.count:
                param.metavar = ""
            elif param.type_descriptor.is_choice:
                param.metavar = "|".join(map(str, param.type_descriptor.choices or ()))
            else:
                flag = next((o for o in param.opts if o.startswith("--")), param.name or "value")
                param.metavar = flag.lstrip("-").replace("-", "_").upper()
    return params


class PlainGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return plain_help(super().get_params(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        """Registration order, with the ``db`` group among the recovery commands (typer
        would list groups after every command)."""
        names = super().list_commands(ctx)
        if "db" in names and "backups" in names:
            names.remove("db")
            names.insert(names.index("backups") + 1, "db")
        return names


class PlainCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return plain_help(super().get_params(ctx))


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"testio-sync {metadata.version('testio-sync')}")
        raise typer.Exit()


app = typer.Typer(
    name="testio-sync",
    help=APP_HELP,
    cls=PlainGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options before the command (``--version``, shell completion)."""


# In the order a user needs them: sync, look, report, recover; tools last.
for command in (sync, status, report, query, search, show):
    app.command(cls=PlainCommand)(command)
app.command(cls=PlainCommand, name="list")(list_)
for command in (restore, backups, worker, serve):
    app.command(cls=PlainCommand)(command)
db_group = typer.Typer(name="db", help=DB_HELP, cls=PlainGroup, no_args_is_help=True)
db_group.command(cls=PlainCommand, name="copy")(db_copy)
app.add_typer(db_group)
app.command(cls=PlainCommand)(demo)
app.command(cls=PlainCommand, context_settings=SIMULATE_SETTINGS)(simulate)


def main() -> Any:
    """Console-script entry point (``testio-sync``)."""
    return app(prog_name="testio-sync")
