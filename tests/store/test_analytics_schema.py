"""Schema version 5: a bug's devices and a test's environment title follow every write."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from testio_sync.store import save
from testio_sync.store.db import close_database, open_database
from testio_sync.store.migrations import MIGRATIONS

from . import payloads as api

PHONE = {
    "category": {"name": "Smartphones"},
    "operating_system": {"name": "Android 14"},
    "browsers": [{"name": "Chrome"}, {"name": "Firefox"}],
}
LAPTOP = {
    "category": {"name": "Computers"},
    "operating_system": {"name": "Windows 11"},
    "browsers": [],
}


def _devices(db: Any) -> list[tuple[Any, ...]]:
    return db.execute_sql(
        "SELECT bug_id, position, category, operating_system, browser FROM bug_devices"
        " ORDER BY 1, 2, 5"
    ).fetchall()


def _with_devices(bid: int, test_id: int, devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {**api.bug(bid, test_id=test_id), "devices": devices}


def test_bug_devices_follow_inserts_updates_and_deletes(db, now) -> None:
    save.save_products([api.product(1)], now=now)
    save.save_tests(1, [api.exploratory_test(100)], now=now)

    save.save_bugs([100], {100: [_with_devices(1, 100, [PHONE, LAPTOP])]}, now=now)
    assert _devices(db) == [
        (1, 0, "Smartphones", "Android 14", "Chrome"),
        (1, 0, "Smartphones", "Android 14", "Firefox"),
        (1, 1, "Computers", "Windows 11", None),
    ]

    save.save_bugs([100], {100: [_with_devices(1, 100, [LAPTOP])]}, now=now)
    assert _devices(db) == [(1, 0, "Computers", "Windows 11", None)]

    save.save_bugs([100], {100: []}, now=now)
    assert _devices(db) == []


def test_the_environment_title_column_follows_the_tests_json(db, now) -> None:
    """The credentials never reach it: only the scrubbed title is copied."""
    save.save_products([api.product(1)], now=now)
    test = api.exploratory_test(100)
    save.save_tests(1, [test], now=now)
    title = test["test_environment"]["title"]
    assert db.execute_sql("SELECT environment_title FROM tests").fetchall() == [(title,)]

    test["test_environment"] = {**test["test_environment"], "title": "Staging 2"}
    test["title"] = "changed"
    save.save_tests(1, [test], now=now)
    assert db.execute_sql("SELECT environment_title FROM tests").fetchall() == [("Staging 2",)]


def test_an_upgrade_fills_the_device_rows_of_stored_bugs(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    con = sqlite3.connect(path)
    for statements in MIGRATIONS[:3]:
        for statement in statements:
            con.execute(statement)
    con.execute(
        "INSERT INTO products (id, name, is_sectioned, section_ids, raw, synced_at)"
        " VALUES (1, 'Shop', 0, '[]', '{}', '2025-01-01T00:00:00.000000Z')"
    )
    con.execute(
        "INSERT INTO tests (id, product_id, status, raw, synced_at) VALUES (7, 1, 'archived',"
        ' \'{"test_environment": {"id": 3, "title": "Prod"}}\', \'2025-01-01T00:00:00.000000Z\')'
    )
    con.execute(
        "INSERT INTO bugs (id, test_id, product_id, auto_accepted, known, raw, synced_at)"
        " VALUES (9, 7, 1, 0, 0, ?, '2025-01-01T00:00:00.000000Z')",
        [
            '{"devices": [{"category": {"name": "Tablets"}, "operating_system": "iPadOS 17",'
            ' "browsers": ["Safari"]}, "not a device"]}'
        ],
    )
    con.execute("PRAGMA user_version = 3")
    con.commit()
    con.close()

    db = open_database(path)
    try:
        with db.connection_context():
            assert _devices(db) == [(9, 0, "Tablets", "iPadOS 17", "Safari")]
            assert db.execute_sql("SELECT environment_title FROM tests").fetchall() == [("Prod",)]
    finally:
        close_database(path)
