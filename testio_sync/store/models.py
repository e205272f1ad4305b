"""Tables of the local mirror, as peewee models bound to one deferred database.

Each fetched entity keeps its typed columns next to its raw JSON (the test
environment's credentials removed before it gets here). Timestamps are aware
UTC datetimes stored as ISO text, so SQL comparisons on them are correct.
"""

from __future__ import annotations

import json
from datetime import datetime

from peewee import (
    AutoField,
    DatabaseProxy,
    Field,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    Node,
    TextField,
)

from testio_sync.dates import parse_iso, to_stored

database = DatabaseProxy()


class UtcField(Field):
    """Aware UTC datetime stored as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as text)."""

    field_type = "TEXT"

    def db_value(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return to_stored(value)

    def python_value(self, value: str | None) -> datetime | None:
        return parse_iso(value)


class JsonTextField(TextField):
    """JSON kept as its text on both engines (PostgreSQL too), so "changed?" compares text."""

    def db_value(self, value: object) -> str | None:
        if value is None or isinstance(value, Node):
            return value  # type: ignore[return-value]
        return json.dumps(value)

    def python_value(self, value: str | None) -> object:
        return None if value is None else json.loads(value)


class FlagField(IntegerField):
    """A yes/no stored as 0/1 on both engines (an integer column, as SQLite has it)."""

    def db_value(self, value: object) -> int | None:
        if value is None or isinstance(value, Node):
            return value  # type: ignore[return-value]
        return int(bool(value))

    def python_value(self, value: int | None) -> bool | None:
        return None if value is None else bool(value)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Product(BaseModel):
    id = IntegerField(primary_key=True)
    name = TextField()
    type = TextField(null=True)
    description = TextField(null=True)
    is_sectioned = FlagField(default=False)
    section_ids = JsonTextField(default=list)
    raw = JsonTextField()
    synced_at = UtcField()
    features_synced_at = UtcField(null=True)
    tests_synced_at = UtcField(null=True)
    tests_complete_at = UtcField(null=True)  # last walk that reached the list's end

    class Meta:
        table_name = "products"


class Feature(BaseModel):
    id = IntegerField(primary_key=True)
    product = ForeignKeyField(Product, column_name="product_id", on_delete="CASCADE")
    title = TextField()
    description = TextField(null=True)
    howtofind = TextField(null=True)
    user_stories = JsonTextField(default=list)
    section_ids = JsonTextField(default=list)
    raw = JsonTextField()
    synced_at = UtcField()

    class Meta:
        table_name = "features"


class ExploratoryTest(BaseModel):
    id = IntegerField(primary_key=True)
    product = ForeignKeyField(Product, column_name="product_id", on_delete="CASCADE")
    section_id = IntegerField(null=True)
    title = TextField(null=True)
    status = TextField(index=True)
    review_status = TextField(null=True)
    testing_type = TextField(null=True)
    start_at = UtcField(null=True)
    end_at = UtcField(null=True, index=True)
    created_by = TextField(null=True)
    submitted_by = TextField(null=True)
    raw = JsonTextField()
    synced_at = UtcField()
    bugs_synced_at = UtcField(null=True)
    # True once the bugs were fetched while the test was already immutable.
    bugs_final = FlagField(default=False)
    # The test environment's title, copied out of ``raw`` by a trigger (for analytics).
    environment_title = TextField(null=True)
    # The ISO week of ``end_at`` (``2026-W48``), written with the row: the analytics bucket.
    end_week = TextField(null=True)

    class Meta:
        table_name = "tests"


class TestFeature(BaseModel):
    __test__ = False  # not a pytest test class

    id = IntegerField(primary_key=True)  # the test-feature id
    test = ForeignKeyField(ExploratoryTest, column_name="test_id", on_delete="CASCADE")
    feature_id = IntegerField(null=True, index=True)
    title = TextField(null=True)
    raw = JsonTextField()

    class Meta:
        table_name = "test_features"


class Bug(BaseModel):
    id = IntegerField(primary_key=True)
    test = ForeignKeyField(ExploratoryTest, column_name="test_id", on_delete="CASCADE")
    product_id = IntegerField(index=True)
    feature_id = IntegerField(null=True)
    test_feature_id = IntegerField(null=True)
    title = TextField(null=True)
    severity = TextField(null=True)
    status = TextField(null=True)
    auto_accepted = FlagField(default=False)
    known = FlagField(default=False)
    reject_reason = TextField(null=True)
    author_name = TextField(null=True)
    reported_at = UtcField(null=True)
    raw = JsonTextField()
    synced_at = UtcField()

    class Meta:
        table_name = "bugs"


class BugDevice(BaseModel):
    """One (device, browser) of a bug, derived from ``bugs.raw`` by triggers (read-only here).

    It repeats the bug's test and the bug columns analytics reads, so that a query by
    device never reads ``bugs``.
    """

    bug_id = IntegerField()
    position = IntegerField()  # the device's index in the bug's ``devices``
    category = TextField(null=True)
    operating_system = TextField(null=True)
    browser = TextField(null=True)
    test_id = IntegerField(null=True)
    feature_id = IntegerField(null=True)
    severity = TextField(null=True)
    status = TextField(null=True)
    auto_accepted = FlagField(null=True)
    known = FlagField(null=True)
    author_name = TextField(null=True)
    reject_reason = TextField(null=True)

    class Meta:
        table_name = "bug_devices"
        primary_key = False


class User(BaseModel):
    id = AutoField()
    kind = TextField()  # "tester" (bug authors) or "customer" (created_by / submitted_by)
    name = TextField()
    first_seen_at = UtcField()
    last_seen_at = UtcField()

    class Meta:
        table_name = "users"
        indexes = ((("kind", "name"), True),)


class BrokenTest(BaseModel):
    """A test that makes its page answer 500 even alone; known only by its neighbours."""

    id = AutoField()
    product_id = IntegerField(index=True)
    position = IntegerField()  # 0-based index in the end_at-descending list when seen
    prev_test_id = IntegerField(null=True)
    prev_end_at = UtcField(null=True)
    next_test_id = IntegerField(null=True)
    next_end_at = UtcField(null=True)
    first_seen_at = UtcField()
    last_seen_at = UtcField()
    resolved_at = UtcField(null=True)

    class Meta:
        table_name = "broken_tests"
        indexes = ((("product_id", "prev_test_id", "next_test_id"), True),)


class SyncEvent(BaseModel):
    """One row per run: request, live progress, outcome. The authority on run state."""

    id = AutoField()
    run_id = TextField(unique=True)
    trigger = TextField()
    phases = JsonTextField()
    scope = JsonTextField()
    options = JsonTextField()
    status = TextField(index=True)
    enqueued_at = UtcField()
    started_at = UtcField(null=True)
    finished_at = UtcField(null=True)
    duration_seconds = FloatField(null=True)
    owner_pid = IntegerField(null=True)
    owner_started_at = FloatField(null=True)  # psutil create_time, rules out PID reuse
    in_process = FlagField(default=False)
    progress = JsonTextField(null=True)
    result = JsonTextField(null=True)
    error = TextField(null=True)
    products_synced = IntegerField(default=0)
    features_refreshed = IntegerField(default=0)
    tests_discovered = IntegerField(default=0)
    tests_updated = IntegerField(default=0)
    tests_removed = IntegerField(default=0)
    bugs_refreshed = IntegerField(default=0)

    class Meta:
        table_name = "sync_events"


class SyncMetadata(BaseModel):
    key = TextField(primary_key=True)
    value = TextField(null=True)
    updated_at = UtcField()

    class Meta:
        table_name = "sync_metadata"


ENTITY_MODELS: tuple[type[BaseModel], ...] = (
    Product,
    Feature,
    ExploratoryTest,
    TestFeature,
    Bug,
    User,
    BrokenTest,
)
ALL_MODELS: tuple[type[BaseModel], ...] = (*ENTITY_MODELS, SyncEvent, SyncMetadata)

__all__ = [
    "ALL_MODELS",
    "ENTITY_MODELS",
    "BaseModel",
    "BrokenTest",
    "Bug",
    "BugDevice",
    "ExploratoryTest",
    "Feature",
    "Product",
    "SyncEvent",
    "SyncMetadata",
    "TestFeature",
    "User",
    "UtcField",
    "database",
]
