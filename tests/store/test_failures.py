"""A full disk is named as such, even behind the rollback error that used to hide it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from testio_sync.store import failures


def full_then_failed_rollback(path: Path) -> sqlite3.OperationalError:
    """A real SQLITE_FULL (page limit), then the rollback that finds no transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE t (b BLOB)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        try:
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
        except sqlite3.OperationalError:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError as hiding:
                return hiding
        raise AssertionError("the page limit did not fail the insert")
    finally:
        conn.close()


def test_a_full_disk_behind_a_failed_rollback_is_named_with_its_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    hiding = full_then_failed_rollback(path)
    assert str(hiding) == "cannot rollback - no transaction is active"

    assert failures.describe(hiding, path) == (
        f"the disk holding {path} is full or the database hit its size limit "
        "(database or disk is full); free space"
    )


@pytest.mark.parametrize("message", ["database is locked", "no such table: x"])
def test_other_errors_pass_through_on_one_line(message: str) -> None:
    assert failures.describe(sqlite3.OperationalError(f"{message}\n  detail"), None) == (
        f"{message} detail"
    )
