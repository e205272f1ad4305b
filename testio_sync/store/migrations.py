"""Schema versions, each a list of SQL statements applied once, in order.

A new database runs every step from version 1, so a fresh install and an
upgraded one end with the same schema. ``PRAGMA user_version`` records the
version reached. Steps are frozen once released: change the schema by adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from testio_sync.store import backend, search_index
from testio_sync.store.normalize import iso_week

Step = str | Callable[[Any], None]

_V1 = [
    'CREATE TABLE "products" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL,'
    ' "type" TEXT, "description" TEXT, "is_sectioned" INTEGER NOT NULL,'
    ' "section_ids" TEXT NOT NULL, "raw" TEXT NOT NULL, "synced_at" TEXT NOT NULL,'
    ' "features_synced_at" TEXT, "tests_synced_at" TEXT)',
    'CREATE TABLE "features" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "product_id" INTEGER NOT NULL, "title" TEXT NOT NULL, "description" TEXT,'
    ' "howtofind" TEXT, "user_stories" TEXT NOT NULL, "section_ids" TEXT NOT NULL,'
    ' "raw" TEXT NOT NULL, "synced_at" TEXT NOT NULL,'
    ' FOREIGN KEY ("product_id") REFERENCES "products" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "features_product_id" ON "features" ("product_id")',
    'CREATE TABLE "tests" ("id" INTEGER NOT NULL PRIMARY KEY, "product_id" INTEGER NOT NULL,'
    ' "section_id" INTEGER, "title" TEXT, "status" TEXT NOT NULL, "review_status" TEXT,'
    ' "testing_type" TEXT, "start_at" TEXT, "end_at" TEXT, "created_by" TEXT,'
    ' "submitted_by" TEXT, "raw" TEXT NOT NULL, "synced_at" TEXT NOT NULL,'
    ' "bugs_synced_at" TEXT,'
    ' FOREIGN KEY ("product_id") REFERENCES "products" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "tests_product_id" ON "tests" ("product_id")',
    'CREATE INDEX "tests_status" ON "tests" ("status")',
    'CREATE INDEX "tests_end_at" ON "tests" ("end_at")',
    'CREATE TABLE "test_features" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "test_id" INTEGER NOT NULL, "feature_id" INTEGER, "title" TEXT, "raw" TEXT NOT NULL,'
    ' FOREIGN KEY ("test_id") REFERENCES "tests" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "test_features_test_id" ON "test_features" ("test_id")',
    'CREATE INDEX "test_features_feature_id" ON "test_features" ("feature_id")',
    'CREATE TABLE "bugs" ("id" INTEGER NOT NULL PRIMARY KEY, "test_id" INTEGER NOT NULL,'
    ' "product_id" INTEGER NOT NULL, "feature_id" INTEGER, "test_feature_id" INTEGER,'
    ' "title" TEXT, "severity" TEXT, "status" TEXT, "auto_accepted" INTEGER NOT NULL,'
    ' "known" INTEGER NOT NULL, "reject_reason" TEXT, "author_name" TEXT,'
    ' "reported_at" TEXT, "raw" TEXT NOT NULL, "synced_at" TEXT NOT NULL,'
    ' FOREIGN KEY ("test_id") REFERENCES "tests" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "bugs_test_id" ON "bugs" ("test_id")',
    'CREATE INDEX "bugs_product_id" ON "bugs" ("product_id")',
    'CREATE TABLE "users" ("id" INTEGER NOT NULL PRIMARY KEY, "kind" TEXT NOT NULL,'
    ' "name" TEXT NOT NULL, "first_seen_at" TEXT NOT NULL, "last_seen_at" TEXT NOT NULL)',
    'CREATE UNIQUE INDEX "users_kind_name" ON "users" ("kind", "name")',
    'CREATE TABLE "sync_events" ("id" INTEGER NOT NULL PRIMARY KEY, "run_id" TEXT NOT NULL,'
    ' "trigger" TEXT NOT NULL, "phases" TEXT NOT NULL, "scope" TEXT NOT NULL,'
    ' "options" TEXT NOT NULL, "status" TEXT NOT NULL, "enqueued_at" TEXT NOT NULL,'
    ' "started_at" TEXT, "finished_at" TEXT, "duration_seconds" REAL,'
    ' "owner_pid" INTEGER, "owner_started_at" REAL, "in_process" INTEGER NOT NULL,'
    ' "progress" TEXT, "result" TEXT, "error" TEXT, "products_synced" INTEGER NOT NULL,'
    ' "features_refreshed" INTEGER NOT NULL, "tests_discovered" INTEGER NOT NULL,'
    ' "tests_updated" INTEGER NOT NULL, "tests_removed" INTEGER NOT NULL,'
    ' "bugs_refreshed" INTEGER NOT NULL)',
    'CREATE UNIQUE INDEX "sync_events_run_id" ON "sync_events" ("run_id")',
    'CREATE INDEX "sync_events_status" ON "sync_events" ("status")',
    'CREATE TABLE "sync_metadata" ("key" TEXT NOT NULL PRIMARY KEY, "value" TEXT,'
    ' "updated_at" TEXT NOT NULL)',
]

# Version 2: broken tests are recorded, and bugs fetched after a test became
# immutable are marked final so they are never fetched again.
_V2 = [
    'ALTER TABLE "tests" ADD COLUMN "bugs_final" INTEGER NOT NULL DEFAULT 0',
    'CREATE TABLE "broken_tests" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "product_id" INTEGER NOT NULL, "position" INTEGER NOT NULL, "prev_test_id" INTEGER,'
    ' "prev_end_at" TEXT, "next_test_id" INTEGER, "next_end_at" TEXT,'
    ' "first_seen_at" TEXT NOT NULL, "last_seen_at" TEXT NOT NULL, "resolved_at" TEXT)',
    'CREATE INDEX "broken_tests_product_id" ON "broken_tests" ("product_id")',
    'CREATE UNIQUE INDEX "broken_tests_product_id_prev_test_id_next_test_id"'
    ' ON "broken_tests" ("product_id", "prev_test_id", "next_test_id")',
]

# Version 3: when a product's test list was last walked to its end. Until then the
# store may hold only the newest pages (a first walk was killed): walk to the end.
_V3 = ['ALTER TABLE "products" ADD COLUMN "tests_complete_at" TEXT']

# Version 4: the full-text index (``search_index``), built from the rows already stored.
# A step is SQL text or a function of the database (here: index what is stored).
# A later change to the indexed text needs its own step that runs ``search_index.rebuild``.
_V4: list[Step] = [*search_index.CREATE, search_index.rebuild]


# Version 5: analytics. A bug's devices, one row per (device, browser), kept in step
# with ``bugs.raw`` by triggers so the platform, browser and device-category
# dimensions join a narrow table instead of parsing every bug's JSON per query.
_DEVICE_ROWS = (
    "SELECT {bug}.id, d.key,"
    " COALESCE(json_extract(d.value, '$.category.name'),"
    "  CASE json_type(d.value, '$.category') WHEN 'text' THEN"
    "  json_extract(d.value, '$.category') END),"
    " COALESCE(json_extract(d.value, '$.operating_system.name'),"
    "  CASE json_type(d.value, '$.operating_system') WHEN 'text' THEN"
    "  json_extract(d.value, '$.operating_system') END),"
    " CASE br.type WHEN 'object' THEN json_extract(br.value, '$.name')"
    "  WHEN 'text' THEN br.value END"
    " FROM {source}json_each(CASE WHEN json_valid({bug}.raw) THEN {bug}.raw END, '$.devices') d"
    " LEFT JOIN json_each(d.value, '$.browsers') br"
    " WHERE d.type = 'object'"
)
_INSERT_DEVICES = (
    'INSERT INTO "bug_devices" ("bug_id", "position", "category", "operating_system", "browser") '
)
_V5 = [
    'CREATE TABLE "bug_devices" ("bug_id" INTEGER NOT NULL, "position" INTEGER NOT NULL,'
    ' "category" TEXT, "operating_system" TEXT, "browser" TEXT)',
    _INSERT_DEVICES + _DEVICE_ROWS.format(bug="bugs", source='"bugs", '),
    'CREATE TRIGGER "bugs_devices_insert" AFTER INSERT ON "bugs" BEGIN '
    + _INSERT_DEVICES
    + _DEVICE_ROWS.format(bug="NEW", source="")
    + "; END",
    'CREATE TRIGGER "bugs_devices_update" AFTER UPDATE OF "raw" ON "bugs" BEGIN'
    ' DELETE FROM "bug_devices" WHERE "bug_id" = OLD.id; '
    + _INSERT_DEVICES
    + _DEVICE_ROWS.format(bug="NEW", source="")
    + "; END",
    'CREATE TRIGGER "bugs_devices_delete" AFTER DELETE ON "bugs" BEGIN'
    ' DELETE FROM "bug_devices" WHERE "bug_id" = OLD.id; END',
    # The environment's title out of the test's JSON, as a column analytics can index.
    'ALTER TABLE "tests" ADD COLUMN "environment_title" TEXT',
    'UPDATE "tests" SET "environment_title" = json_extract('
    " CASE WHEN json_valid(raw) THEN raw END, '$.test_environment.title')",
    'CREATE TRIGGER "tests_environment_insert" AFTER INSERT ON "tests" BEGIN'
    ' UPDATE "tests" SET "environment_title" ='
    " json_extract(CASE WHEN json_valid(NEW.raw) THEN NEW.raw END, '$.test_environment.title')"
    ' WHERE "id" = NEW.id; END',
    'CREATE TRIGGER "tests_environment_update" AFTER UPDATE OF "raw" ON "tests" BEGIN'
    ' UPDATE "tests" SET "environment_title" ='
    " json_extract(CASE WHEN json_valid(NEW.raw) THEN NEW.raw END, '$.test_environment.title')"
    ' WHERE "id" = NEW.id; END',
    # Covering indexes: rows carry their raw JSON (kilobytes), so a scan of the table
    # itself reads every page; these hold all a metrics query reads of a test or bug.
    'CREATE INDEX "tests_analytics" ON "tests" ("product_id", "status", "end_at",'
    ' "testing_type", "section_id", "created_by", "submitted_by", "environment_title",'
    ' "bugs_final", "bugs_synced_at")',
    'CREATE INDEX "bugs_analytics" ON "bugs" ("test_id", "feature_id", "status",'
    ' "auto_accepted", "severity", "known", "author_name", "reject_reason")',
    'CREATE INDEX "test_features_analytics" ON "test_features" ("test_id", "feature_id")',
    'CREATE INDEX "bug_devices_analytics" ON "bug_devices" ("bug_id", "operating_system",'
    ' "browser", "category")',
]


# Version 6: faster device dimensions. Each device row also carries its bug's test and
# the bug columns analytics reads, so a device query joins the tests in scope straight
# to ``bug_devices`` and never visits ``bugs``; three covering indexes, one led by each
# device column, let SQLite group by reading an index in order instead of sorting.
BUG_COLUMNS = (
    "test_id",
    "feature_id",
    "severity",
    "status",
    "auto_accepted",
    "known",
    "author_name",
    "reject_reason",
)
_FACT_ROWS = _DEVICE_ROWS.replace(
    "SELECT {bug}.id,",
    "SELECT {bug}.id, " + ", ".join(f"{{bug}}.{c}" for c in BUG_COLUMNS) + ",",
    1,
)
_INSERT_FACTS = (
    'INSERT INTO "bug_devices" ("bug_id", '
    + ", ".join(f'"{c}"' for c in BUG_COLUMNS)
    + ', "position", "category", "operating_system", "browser") '
)
# Each pair of device columns leads one index (SQLite groups by any order of the keys).
# The bug id follows the pair, so that a distinct count of bugs per pair reads them in
# order and needs no temporary B-tree.
DEVICE_ORDERS = (
    ("category", "browser", "bug_id", "operating_system"),
    ("browser", "operating_system", "bug_id", "category"),
    ("operating_system", "category", "bug_id", "browser"),
)


def device_index(keys: tuple[str, ...]) -> str:
    columns = ", ".join(f'"{c}"' for c in [*keys, *BUG_COLUMNS])
    return f'CREATE INDEX "bug_devices_by_{keys[0]}" ON "bug_devices" ({columns})'


def fill_end_weeks(db: Any) -> None:
    """Store the ISO week of every test's end, as ``save_tests`` writes it from now on."""
    cur = db.cursor()
    cur.execute('SELECT "id", "end_at" FROM "tests" WHERE "end_at" IS NOT NULL')
    ends = cur.fetchall()
    cur.executemany(
        backend.sql('UPDATE "tests" SET "end_week" = ? WHERE "id" = ?', db),
        [(iso_week(datetime.fromisoformat(end.replace("Z", "+00:00"))), tid) for tid, end in ends],
    )


# Every bug's device rows in one statement (version 6 fills the table with it; a bulk
# load such as ``db copy`` runs it instead of the insert trigger).
FILL_DEVICES = _INSERT_FACTS + _FACT_ROWS.format(bug="bugs", source='"bugs", ')
DEVICE_TRIGGER = "bugs_devices_insert"  # the trigger ``FILL_DEVICES`` stands in for

# Version 6's covering index of tests, the same text on both engines.
TESTS_ANALYTICS_V6 = (
    'CREATE INDEX "tests_analytics" ON "tests" ("product_id", "status", "end_at", "end_week",'
    ' "testing_type", "section_id", "created_by", "submitted_by", "environment_title",'
    ' "bugs_final", "bugs_synced_at")'
)

_V6: list[Step] = [
    'DROP TRIGGER "bugs_devices_insert"',
    'DROP TRIGGER "bugs_devices_update"',
    *(
        f'ALTER TABLE "bug_devices" ADD COLUMN "{c}" '
        + ("INTEGER" if c in ("test_id", "feature_id", "auto_accepted", "known") else "TEXT")
        for c in BUG_COLUMNS
    ),
    'DELETE FROM "bug_devices"',
    FILL_DEVICES,
    # Same names as version 5's: they replace them.
    'CREATE TRIGGER "bugs_devices_insert" AFTER INSERT ON "bugs" BEGIN '
    + _INSERT_FACTS
    + _FACT_ROWS.format(bug="NEW", source="")
    + "; END",
    # Any column: the rows copy the bug's columns, not only what ``raw`` yields.
    'CREATE TRIGGER "bugs_devices_update" AFTER UPDATE ON "bugs" BEGIN'
    ' DELETE FROM "bug_devices" WHERE "bug_id" = OLD.id; '
    + _INSERT_FACTS
    + _FACT_ROWS.format(bug="NEW", source="")
    + "; END",
    *(device_index(keys) for keys in DEVICE_ORDERS),
    # The week bucket, computed once per write instead of by date arithmetic per query;
    # the tests' covering index (same name, so version 5 undoes cleanly) gains it.
    'ALTER TABLE "tests" ADD COLUMN "end_week" TEXT',
    fill_end_weeks,
    'DROP INDEX "tests_analytics"',
    TESTS_ANALYTICS_V6,
]

# Version 7: several workers share a PostgreSQL store. A run names the host of its
# owner (a PID means nothing on another machine), and ``sync_lock`` holds the record
# of whoever holds the mirror's advisory sync lock. SQLite keeps its file lock and
# leaves the table empty; both engines have the same schema at every version.
_V7: list[Step] = [
    'ALTER TABLE "sync_events" ADD COLUMN "owner_host" TEXT',
    'CREATE TABLE "sync_lock" ("name" TEXT NOT NULL PRIMARY KEY, "run_id" TEXT NOT NULL,'
    ' "token" TEXT NOT NULL, "host" TEXT NOT NULL, "pid" INTEGER NOT NULL,'
    ' "create_time" REAL, "backend_pid" INTEGER, "acquired_at" TEXT NOT NULL,'
    ' "heartbeat_at" TEXT NOT NULL, "took_over" TEXT)',
]

# Version 8: cheaper writes on PostgreSQL (a device trigger that parses a bug's JSON
# once, and the bug id in the covering index of bugs). SQLite needs neither: its
# trigger reads the JSON in place, and every SQLite index carries the row id.
_V8: list[Step] = []

MIGRATIONS: tuple[Sequence[Step], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8)
SCHEMA_VERSION = len(MIGRATIONS)
