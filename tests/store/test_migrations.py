"""Schema upgrades in place and refusal of newer databases; private file modes."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testio_sync.errors import StoreError
from testio_sync.store import queries, save
from testio_sync.store.db import close_database, open_database, schema_version
from testio_sync.store.migrations import MIGRATIONS, SCHEMA_VERSION

from . import payloads as api


def _create_v1(path: Path) -> None:
    con = sqlite3.connect(path)
    try:
        for statement in MIGRATIONS[0]:
            con.execute(statement)
        con.execute(
            "INSERT INTO products (id, name, is_sectioned, section_ids, raw, synced_at)"
            " VALUES (1, 'Old shop', 0, '[]', '{\"id\": 1}', '2025-01-01T00:00:00.000000Z')"
        )
        con.execute(
            "INSERT INTO tests (id, product_id, status, raw, synced_at)"
            " VALUES (7, 1, 'archived', '{\"id\": 7}', '2025-01-01T00:00:00.000000Z')"
        )
        con.execute("PRAGMA user_version = 1")
        con.commit()
    finally:
        con.close()


def test_a_version_1_database_is_upgraded_in_place_keeping_its_rows(tmp_path) -> None:
    """open_database applies the missing steps; old rows survive with new defaults."""
    path = tmp_path / "old.db"
    _create_v1(path)
    db = open_database(path)
    try:
        with db.connection_context():
            assert schema_version(db) == SCHEMA_VERSION
        assert queries.find_product(1).name == "Old shop"
        old_test = queries.get_test(7)
        assert old_test.bugs_final is False
        now = datetime(2026, 3, 10, tzinfo=UTC)
        save.record_broken_test(1, 0, None, None, 7, None, now=now)
        assert len(queries.list_broken_tests(1)) == 1
    finally:
        close_database(path)


def test_a_database_from_a_newer_version_is_refused_naming_both_versions(tmp_path) -> None:
    """A downgrade must not touch a schema it does not know."""
    path = tmp_path / "future.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(StoreError) as caught:
        open_database(path)
    assert "99" in str(caught.value)
    assert f"({SCHEMA_VERSION})" in str(caught.value)


def test_database_files_are_private(db, db_path, now) -> None:
    """The cache and its write-ahead log are 0600 (they hold customer data)."""
    save.save_products([api.product(1)], now=now)
    open_database(db_path)  # re-opening re-checks the sidecars
    for path in db_path.parent.glob("cache.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
