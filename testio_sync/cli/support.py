"""What every ``testio-sync`` command shares: exit codes, settings, errors, confirmation.

Kept apart from the commands so each command module imports it without
importing the others; tests replace ``load_settings`` or ``stdin_is_interactive``
here.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from testio_sync.errors import (
    ConfigError,
    SyncLockedError,
    TestioSyncError,
    UnknownProductsError,
    UsageError,
)
from testio_sync.settings import Settings, parse_product_ids
from testio_sync.store.db import DATABASE_ERRORS, explain
from testio_sync.sync.types import SyncResult, SyncStatus

if TYPE_CHECKING:
    from testio_sync.service import SyncService

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 4
EXIT_TIMEOUT = 5  # --timeout ran out; a worker's run goes on
EXIT_INTERRUPTED = 130

# The runner records a lock wait that timed out as the run's only error, in the
# words of SyncLockedError: "... waiting for the sync lock ..." or "Another sync
# holds the lock ...".
_LOCK_WAIT = re.compile(r"sync lock|holds the lock", re.IGNORECASE)


def load_settings() -> Settings:
    """Settings for this invocation; tests may replace this function."""
    return Settings.from_env()


def stdin_is_interactive() -> bool:
    """True when a person can answer a confirmation on stdin."""
    return sys.stdin.isatty()


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``Error: ...`` on stderr and exit with ``code``."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def ids_option(values: list[str] | None, flag: str = "--product-ids") -> list[int] | None:
    """``--product-ids 1,2 --product-ids 3`` as ids (None when not given); a bad one exits 2."""
    if not values:
        return None
    try:
        return list(parse_product_ids(",".join(values), source=flag))
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def settings_or_exit(*, create_home: bool = True) -> Settings:
    """Settings from the environment; a bad variable is a usage error (exit 2).

    ``create_home`` also makes sure the data directory can hold a mirror, before
    anything imports the queue: a path that is a file or read-only is one line.
    """
    try:
        settings = load_settings()
        if create_home:
            settings.ensure_home()
        return settings
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


# What helps with a UsageError, in this interface's words (MCP has its own).
USAGE_HINTS = {
    "products": "see the stored products with `testio-sync status`, "
    "fetch them with `testio-sync sync`",
    "tests": "sync those products first (`testio-sync sync --product-ids ...`)",
    "test": "sync its product first (`testio-sync sync`)",
}
ProductIdsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--product-ids",
        "-p",
        metavar="ID[,ID...]",
        help="Products; default: TESTIO_PRODUCT_IDS, else every stored product.",
    ),
]
"""``--product-ids`` of the read commands (``report``, ``query``)."""

FLAG_OF = {  # parameters whose flag is not --name-with-dashes
    "statuses": "--status",
    "metrics": "--metric",
    "dimensions": "--by",
    "filters": "--filter",
}


def flag_of(param: str) -> str:
    """``start_date`` -> ``--start-date``: a library parameter as this CLI's flag."""
    return FLAG_OF.get(param, "--" + param.replace("_", "-"))


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the package's errors into ``Error: ...`` and an exit code, at the edge."""
    try:
        yield
    except UsageError as exc:
        fail(exc.worded(flag_of, USAGE_HINTS) + ".", EXIT_USAGE)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    except SyncLockedError as exc:
        fail(str(exc), EXIT_LOCKED)
    except TestioSyncError as exc:
        fail(str(exc), EXIT_FAILED)
    except DATABASE_ERRORS as exc:  # one that escaped the store's translation (run records)
        fail(explain(exc), EXIT_FAILED)


@contextmanager
def logs_on_stderr(verbose: bool) -> Iterator[None]:
    """``--verbose`` shows the engine's log lines; otherwise the summary says it all."""
    logger = logging.getLogger("testio_sync")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.setLevel(logging.INFO if verbose else logging.CRITICAL)
    previous = logger.level
    if verbose:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def open_service(settings: Settings) -> SyncService:
    """The service for ``settings``.

    Imported here, not at module level: importing the task queue creates its
    file in the data directory, which ``--help`` and ``simulate`` must not do.
    """
    from testio_sync.service import SyncService

    return SyncService(settings)


def require_mirror(settings: Settings) -> None:
    """Refuse (exit 2) to read a mirror that does not exist, rather than create an empty one.

    A mistyped ``TESTIO_SYNC_HOME`` must not look like a mirror whose data was lost.
    """
    if settings.database_url is not None or settings.db_path.is_file():
        return  # a database server's mirror is made by opening it: nothing to mistype
    if settings.home.exists() and not settings.home.is_dir():
        with reported_errors():
            settings.ensure_home()  # says why the path cannot hold a mirror
    fail(
        f"no mirror in {settings.home} (TESTIO_SYNC_HOME): nothing was synced there yet; "
        "`testio-sync sync` creates it.",
        EXIT_USAGE,
    )


def confirm_or_exit(question: str, *, yes: bool, what: str) -> None:
    """Ask for ``yes`` before a destructive step; refuse when nobody can answer."""
    if yes:
        return
    if not stdin_is_interactive():
        fail(
            f"{what} replaces the local data: pass --yes to confirm "
            "(stdin is not a terminal to ask on). Nothing was changed.",
            EXIT_USAGE,
        )
    answer = typer.prompt(
        f"{question} Type 'yes' to go on", default="", show_default=False, err=True
    )
    if answer.strip().lower() != "yes":
        typer.echo("Cancelled: nothing was changed.", err=True)
        raise typer.Exit(EXIT_FAILED)


def lock_wait_timed_out(result: SyncResult) -> bool:
    """True when the run failed only because another sync kept the lock."""
    return (
        result.status == SyncStatus.FAILED
        and not result.phases_completed
        and any(_LOCK_WAIT.search(error) for error in result.errors)
    )


def exit_code_for(result: SyncResult) -> int:
    """0 succeeded, 3 partial, 4 lock wait timed out, 2 unknown products, 1 any other failure."""
    if result.status == SyncStatus.SUCCEEDED:
        return EXIT_OK
    if result.status == SyncStatus.PARTIAL:
        return EXIT_PARTIAL
    if lock_wait_timed_out(result):
        return EXIT_LOCKED
    if not result.phases_completed and any(
        error.startswith(UnknownProductsError.PREFIX) for error in result.errors
    ):
        return EXIT_USAGE  # as when the store already knew: a usage error, nothing changed
    return EXIT_FAILED
