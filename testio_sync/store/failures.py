"""Say what really went wrong when SQLite fails, in one line.

When a COMMIT fails because the disk (or the database's size limit) is full,
SQLite has already rolled the transaction back, and peewee's own rollback then
fails with "cannot rollback - no transaction is active", hiding the cause. The
cause is the error that exception was raised while handling.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from peewee import PeeweeException

from testio_sync.errors import StoreError

NO_TRANSACTION = "no transaction is active"
FULL = "database or disk is full"


class DiskFullError(StoreError):
    """The disk or the database's size limit is full: every later write would fail too."""


def is_full(exc: BaseException) -> bool:
    return FULL in str(root_cause(exc))


def root_cause(exc: BaseException) -> BaseException:
    """The first database error behind a failed rollback (or ``exc`` itself)."""
    seen: set[int] = set()
    while NO_TRANSACTION in str(exc) and id(exc) not in seen:
        seen.add(id(exc))
        behind = exc.__context__
        if not isinstance(behind, PeeweeException | sqlite3.Error):
            break
        exc = behind
    return exc


def describe(exc: BaseException, path: str | Path | None) -> str:
    """One line for a database error: a full disk names the file and what to do."""
    cause = " ".join(str(root_cause(exc)).split())
    if FULL in cause:
        where = f" holding {path}" if path else ""
        return f"the disk{where} is full or the database hit its size limit ({FULL}); free space"
    return cause
