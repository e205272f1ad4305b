"""The full-text index follows every write of the save path, and its check sees drift."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import testsupport

from testio_sync.insights import search as full_text
from testio_sync.store import queries, save, search_index
from testio_sync.store.db import backup_database, close_database, open_database, restore_entities
from testio_sync.store.migrations import SCHEMA_VERSION
from testio_sync.store.models import database
from testio_sync.store.postgres import close_postgres, open_postgres

from . import payloads as api


def hits(text: str, **kw: object) -> list[tuple[str, int]]:
    answer = full_text.search(full_text.SearchRequest.parse(text, limit=100, **kw))
    assert answer["total"] == len(answer["results"])
    return [(r["entity"], r["id"]) for r in answer["results"]]


def assert_exact() -> None:
    check = queries.check_search_index()
    assert check.ok, check


@pytest.fixture
def shop(db, now: datetime) -> None:
    save.save_products([api.product(1), api.product(2, name="Travel app")], now=now)
    save.save_features(1, [api.feature(501), api.feature(502, title="Wishlist")], now=now)
    save.save_tests(1, [api.exploratory_test(101), api.exploratory_test(102)], now=now)
    save.save_tests(2, [api.exploratory_test(201, product_id=2, title="Booking flow")], now=now)
    save.save_bugs(
        [101, 102, 201],
        {
            101: [api.bug(1001, test_id=101), api.bug(1002, test_id=101, title="Zebra stripes")],
            102: [api.bug(1003, test_id=102, title="Coupon field rejects codes")],
            201: [api.bug(2001, test_id=201, title="Seat map blank")],
        },
        now=now,
    )


def test_every_entity_and_field_is_indexed(shop) -> None:
    assert_exact()
    assert hits("travel") == [("product", 2)]
    assert set(hits("password", entities=["feature"])) == {("feature", 501), ("feature", 502)}
    assert ("feature", 502) in hits('"top right corner"')  # howtofind
    assert set(hits("shopper reset")) == {("feature", 501), ("feature", 502)}  # user stories
    assert ("test", 201) in hits("booking")
    assert {("test", 101), ("test", 102), ("test", 201)} <= set(hits("checkout bugs"))  # goal
    assert set(hits("zebra")) == {("bug", 1002)}
    assert ("bug", 1003) in hits('"press pay"')  # steps
    assert ("bug", 2001) in hits("payment form")  # expected result


def test_a_bug_whose_steps_are_one_string_is_indexed(db, now) -> None:
    save.save_products([api.product(1)], now=now)
    save.save_tests(1, [api.exploratory_test(101)], now=now)
    bug = {**api.bug(1001, test_id=101), "steps": "Open the cart, then tap Quokka"}
    save.save_bugs([101], {101: [bug]}, now=now)
    assert hits("quokka") == [("bug", 1001)]
    assert_exact()


def test_titles_rank_above_bodies(db, now) -> None:
    save.save_products([api.product(1)], now=now)
    save.save_tests(1, [api.exploratory_test(101)], now=now)
    in_body = {**api.bug(1001, test_id=101, title="Menu overlaps"), "steps": ["Open the vortex"]}
    in_title = api.bug(1002, test_id=101, title="Vortex page is blank")
    save.save_bugs([101], {101: [in_body, in_title]}, now=now)
    assert hits("vortex") == [("bug", 1002), ("bug", 1001)]


def test_updates_and_removals_leave_no_stale_document(shop, now) -> None:
    save.save_bugs([101], {101: [api.bug(1001, test_id=101, title="Yak shaving")]}, now=now)
    assert hits("zebra") == []  # bug 1002 left test 101's list
    assert hits("yak") == [("bug", 1001)]
    save.save_features(1, [api.feature(501)], now=now)  # feature 502 deleted upstream
    assert hits("wishlist") == []
    save.delete_missing_tests(1, {101})  # test 102 and its bug 1003 go
    assert hits("coupon") == [] and ("test", 102) not in hits("checkout")
    save.save_tests(1, [api.exploratory_test(101, title="Renamed run")], now=now)
    assert ("test", 101) in hits("renamed")
    assert_exact()


def test_a_scoped_wipe_drops_only_that_products_documents(shop) -> None:
    save.wipe([2])
    assert hits("seat") == [] and hits("travel") == [] and hits("booking") == []
    assert hits("zebra") == [("bug", 1002)]
    assert_exact()
    save.wipe()
    assert hits("zebra") == []
    assert_exact()


@pytest.mark.sqlite_only  # a restore reads a SQLite backup file
def test_a_restore_rebuilds_the_index_from_the_restored_rows(shop, db_path: Path, now) -> None:
    backup = backup_database(db_path, db_path.with_name("backup.db"))
    save.wipe()
    save.save_products([api.product(3, name="Gadget store")], now=now)
    restore_entities(backup, db_path)
    assert hits("gadget") == []
    assert hits("zebra") == [("bug", 1002)]
    assert_exact()


def test_the_check_sees_a_missing_a_stale_and_a_changed_document_and_repair_fixes_them(
    shop,
) -> None:
    with database.connection_context():
        cur = database.cursor()
        search_index.forget(database, "bug", [1001])  # missing
        cur.execute("INSERT INTO search_docs VALUES (99999, 'bug', 24999, 1, NULL, 'x', 'y')")
        cur.execute("UPDATE bugs SET title = 'Changed behind its back' WHERE id = 1002")
    check = queries.check_search_index()
    assert (check.missing, check.stale, check.changed, check.ok) == (1, 1, 1, False)
    save.rebuild_search_index()
    assert_exact()


@pytest.mark.sqlite_only  # FTS5's own words and its integrity check
def test_the_check_sees_words_that_differ_from_the_documents(shop) -> None:
    with database.connection_context():
        database.cursor().execute("DELETE FROM search_docs WHERE rowid = 1001 * 4 + 3")
        database.cursor().execute(
            "INSERT INTO search_docs SELECT 1001 * 4 + 3, 'bug', 1001, 1, NULL, 'other', 'words'"
        )
    check = queries.check_search_index()
    assert not check.fts_ok and not check.ok


@pytest.mark.postgresql_only
def test_postgresql_words_follow_their_document_and_the_check_sees_the_change(shop) -> None:
    """The twin of the FTS5 integrity check: PostgreSQL derives ``words`` from the row, so
    an edited document is searched by its new text at once, and the check calls it changed."""
    with database.connection_context():
        database.execute_sql(
            "UPDATE search_docs SET title = 'Ocelot sighting' WHERE rowid = 1002 * 4 + 3"
        )
    assert hits("ocelot") == [("bug", 1002)] and hits("zebra") == []
    check = queries.check_search_index()
    assert (check.changed, check.fts_ok, check.ok) == (1, True, False)
    save.rebuild_search_index()
    assert hits("zebra") == [("bug", 1002)] and hits("ocelot") == []
    assert_exact()


ANALYTICS_SCHEMA_UNDONE = """
DROP TRIGGER bugs_devices_insert; DROP TRIGGER bugs_devices_update;
DROP TRIGGER bugs_devices_delete; DROP TRIGGER tests_environment_insert;
DROP TRIGGER tests_environment_update; DROP TABLE bug_devices;
DROP INDEX tests_analytics; DROP INDEX bugs_analytics; DROP INDEX test_features_analytics;
ALTER TABLE tests DROP COLUMN environment_title; ALTER TABLE tests DROP COLUMN end_week;
DROP TABLE sync_lock; ALTER TABLE sync_events DROP COLUMN owner_host;
"""


@pytest.mark.sqlite_only  # the SQLite file's schema; its PostgreSQL twin follows
def test_the_migration_indexes_a_store_written_before_the_index_existed(
    shop, db_path: Path
) -> None:
    close_database(db_path)
    old = sqlite3.connect(db_path)
    old.executescript("DROP TABLE search_fts; DROP TABLE search_docs; PRAGMA user_version = 3;")
    old.executescript(ANALYTICS_SCHEMA_UNDONE)  # versions 5 to 7 come after 4: back to 3 as well
    old.close()
    open_database(db_path)
    with database.connection_context():
        assert database.execute_sql("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert hits("zebra") == [("bug", 1002)]
    assert hits("travel") == [("product", 2)]
    assert_exact()


PG_BACK_TO_VERSION_3 = [
    "DROP TABLE search_docs",
    'DROP TRIGGER "bugs_devices" ON "bugs"',
    'DROP TRIGGER "tests_environment" ON "tests"',
    'DROP TABLE "bug_devices"',
    'DROP FUNCTION "testio_bug_devices"()',
    'DROP FUNCTION "testio_test_environment"()',
    'DROP INDEX "tests_analytics"',
    'DROP INDEX "bugs_analytics"',
    'DROP INDEX "test_features_analytics"',
    'ALTER TABLE "tests" DROP COLUMN "environment_title", DROP COLUMN "end_week"',
    'ALTER TABLE "sync_events" DROP COLUMN "owner_host"',  # version 7
    'DROP TABLE "sync_lock"',
    'UPDATE "testio_schema" SET "version" = 3',
]


@pytest.mark.postgresql_only
def test_the_postgresql_migration_indexes_a_store_written_before_the_index_existed(shop) -> None:
    assert testsupport.STORE_URL is not None
    with database.connection_context():
        for statement in PG_BACK_TO_VERSION_3:
            database.execute_sql(statement)
    close_postgres(testsupport.STORE_URL)
    db = open_postgres(testsupport.STORE_URL)
    with db.connection_context():
        assert db.execute_sql('SELECT "version" FROM "testio_schema"').fetchone()[0] == (
            SCHEMA_VERSION
        )
    assert hits("zebra") == [("bug", 1002)]
    assert hits("travel") == [("product", 2)]
    assert_exact()
