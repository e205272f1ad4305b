"""Schema version 6: device rows carry their bug's test and columns, tests their end's ISO week,
on upgrade and on write."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from testsupport import make_settings

from testio_sync.store import save
from testio_sync.store.copy import backup_store
from testio_sync.store.db import (
    close_database,
    open_database,
)
from testio_sync.store.migrations import MIGRATIONS
from testio_sync.sync.restore import restore_backup

from . import payloads as api

FACTS = (
    "SELECT bug_id, test_id, severity, status, author_name, category, operating_system, browser"
    " FROM bug_devices ORDER BY 1, position, browser"
)
RAW_BUG = {
    "devices": [
        {
            "category": {"name": "Smartphones"},
            "operating_system": {"name": "Android 14"},
            "browsers": [{"name": "Chrome"}, {"name": "Firefox"}],
        },
        {"category": "Computers", "operating_system": "Windows 11", "browsers": []},
    ]
}


def _expected(bug_id: int, test_id: int, columns: tuple[Any, ...], raw: str) -> list[tuple]:
    """The device rows read from the raw JSON in Python, one per (device, browser)."""
    rows = []
    for device in json.loads(raw)["devices"]:
        category, system = device["category"], device["operating_system"]
        category = category["name"] if isinstance(category, dict) else category
        system = system["name"] if isinstance(system, dict) else system
        for browser in device["browsers"] or [None]:
            name = browser["name"] if isinstance(browser, dict) else browser
            rows.append((bug_id, test_id, *columns, category, system, name))
    return rows  # in device order, browsers in order: as FACTS sorts them


def test_an_upgrade_from_version_5_fills_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    con = sqlite3.connect(path)
    for statements in MIGRATIONS[:5]:
        for statement in statements:
            con.execute(statement) if isinstance(statement, str) else statement(con)
    con.execute(
        "INSERT INTO products (id, name, is_sectioned, section_ids, raw, synced_at)"
        " VALUES (1, 'Shop', 0, '[]', '{}', '2025-01-01T00:00:00.000000Z')"
    )
    con.execute(
        "INSERT INTO tests (id, product_id, status, end_at, raw, synced_at) VALUES"
        " (7, 1, 'archived', '2021-01-03T23:30:00.000000Z', '{}', '2025-01-01T00:00:00.000000Z'),"
        " (8, 1, 'running', NULL, '{}', '2025-01-01T00:00:00.000000Z')"
    )
    raw = json.dumps(RAW_BUG)
    con.execute(
        "INSERT INTO bugs (id, test_id, product_id, severity, status, auto_accepted, known,"
        " author_name, raw, synced_at)"
        " VALUES (9, 7, 1, 'high', 'rejected', 0, 0, 'Ann', ?, '2025-01-01T00:00:00.000000Z')",
        [raw],
    )
    con.execute("PRAGMA user_version = 5")
    con.commit()
    con.close()

    db = open_database(path)
    try:
        with db.connection_context():
            rows = db.execute_sql(FACTS).fetchall()
            assert rows == _expected(9, 7, ("high", "rejected", "Ann"), raw)
            assert len(rows) == 3
            # A Sunday: ISO puts 3 January 2021 in the last week of 2020.
            assert db.execute_sql("SELECT id, end_week FROM tests ORDER BY id").fetchall() == [
                (7, "2020-W53"),
                (8, None),
            ]
    finally:
        close_database(path)


def test_device_rows_follow_a_bug_whose_columns_change(db, now) -> None:
    save.save_products([api.product(1)], now=now)
    save.save_tests(1, [api.exploratory_test(100)], now=now)
    bug = {**api.bug(1, test_id=100), **RAW_BUG}
    save.save_bugs([100], {100: [bug]}, now=now)
    (severity, status, author) = db.execute_sql(
        "SELECT severity, status, author_name FROM bugs"
    ).fetchone()
    raw = json.dumps(RAW_BUG)
    assert db.execute_sql(FACTS).fetchall() == _expected(1, 100, (severity, status, author), raw)

    bug["severity"] = "critical" if severity != "critical" else "low"
    save.save_bugs([100], {100: [bug]}, now=now)
    assert {r[2] for r in db.execute_sql(FACTS).fetchall()} == {bug["severity"]}

    save.save_bugs([100], {100: []}, now=now)
    assert db.execute_sql(FACTS).fetchall() == []


def test_saved_tests_store_the_iso_week_of_their_end(db, now) -> None:
    save.save_products([api.product(1)], now=now)
    test = {**api.exploratory_test(100), "end_at": "2026-12-31T23:30:00-02:00"}  # Jan 1 UTC
    save.save_tests(1, [test], now=now)
    assert db.execute_sql("SELECT end_week FROM tests").fetchall() == [("2026-W53",)]

    test["end_at"] = "2027-01-04T10:00:00Z"
    save.save_tests(1, [test], now=now)
    assert db.execute_sql("SELECT end_week FROM tests").fetchall() == [("2027-W01",)]


def test_a_restore_refills_the_device_rows_and_weeks(db, db_path: Path, tmp_path: Path, now):
    """On either store: the backup file (a copy, on PostgreSQL) restores the derived rows."""
    settings = make_settings(db_path.parent, "http://127.0.0.1:9")
    assert settings.db_path == db_path
    save.save_products([api.product(1)], now=now)
    test = {**api.exploratory_test(100), "end_at": "2027-01-04T10:00:00Z"}
    save.save_tests(1, [test], now=now)
    save.save_bugs([100], {100: [{**api.bug(1, test_id=100), **RAW_BUG}]}, now=now)
    before = db.execute_sql(FACTS).fetchall()
    backup = backup_store(settings, tmp_path / "backup.db")
    save.wipe()
    assert db.execute_sql(FACTS).fetchall() == []

    restore_backup(settings, backup)
    assert db.execute_sql(FACTS).fetchall() == before
    assert len(before) == 3
    assert db.execute_sql("SELECT end_week FROM tests").fetchall() == [("2027-W01",)]
