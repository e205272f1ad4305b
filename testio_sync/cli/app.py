"""``testio-sync``: the command line over ``SyncService``.

Each command parses its flags, calls the service and prints: text on stdout,
``--json`` for scripts, progress and logs on stderr. A ``TestioSyncError``
becomes one ``Error: ...`` line on stderr and a documented exit code, never a
traceback. Commands register on ``app`` (one module per command group);
this module registers each with ``app.command()(function)``.
"""

from __future__ import annotations

from typing import Any

import typer

from testio_sync.cli.demo import demo
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
1    failed: API refused or unreachable, run died, or --timeout ran out
2    usage error: bad flags or settings; nothing was changed
3    partial: the sync finished with errors
4    timed out waiting for the sync lock another sync holds
130  interrupted (Ctrl-C)

Example:
    $ testio-sync sync --since 30d && testio-sync status
"""

app = typer.Typer(
    name="testio-sync",
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (sync, report, search, show, demo, status, restore, worker):
    app.command()(command)
app.command(name="list")(list_)
app.command(context_settings=SIMULATE_SETTINGS)(simulate)
app.command()(serve)


def main() -> Any:
    """Console-script entry point (``testio-sync``)."""
    return app(prog_name="testio-sync")
