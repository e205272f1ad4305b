"""Tests (exploratory tests): upserts, UTC, credentials, test features, customers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testio_sync.errors import StoreError
from testio_sync.store import models, queries, save
from testio_sync.store.models import ExploratoryTest, User

from . import payloads as api


@pytest.fixture
def product(db, now: datetime) -> int:
    save.save_products([api.product(1)], now=now)
    return 1


def test_saving_the_same_test_page_twice_counts_new_then_unchanged(product, now) -> None:
    """Idempotent upsert: same rows, the second run reports nothing new or changed."""
    page = [api.exploratory_test(101), api.exploratory_test(102, status="locked")]
    first = save.save_tests(product, page, now=now)
    second = save.save_tests(product, page, now=now + timedelta(minutes=1))
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 2)
    assert ExploratoryTest.select().count() == 2
    assert models.TestFeature.select().count() == 2
    assert queries.get_test(101).synced_at == now + timedelta(minutes=1)


def test_a_test_whose_payload_changed_is_counted_updated(product, now) -> None:
    """Updated means stored before and raw changed; typed columns follow."""
    save.save_tests(product, [api.exploratory_test(101), api.exploratory_test(102)], now=now)
    changed = api.exploratory_test(101, status="locked")
    counts = save.save_tests(product, [changed, api.exploratory_test(102)], now=now)
    assert counts.updated_ids == [101]
    assert counts.unchanged == 1
    assert queries.get_test(101).status == "locked"


def test_typed_columns_are_filled_from_the_payload(product, now) -> None:
    """Section id, times in UTC, people and a null testing type for test-case runs."""
    test = api.exploratory_test(
        101, testing_type=None, submitted_by="Sam Submitter", end_at="2026-03-01T18:00:00+02:00"
    )
    save.save_tests(product, [test], now=now)
    stored = queries.get_test(101)
    assert stored.section_id == 11
    assert stored.testing_type is None
    assert stored.end_at == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert stored.start_at == datetime(2026, 2, 27, 8, 0, tzinfo=UTC)
    assert (stored.created_by, stored.submitted_by) == ("Carla Customer", "Sam Submitter")
    assert stored.raw["title"] == "Checkout regression"


def test_mixed_offsets_are_stored_in_utc_and_order_by_real_time(product, now) -> None:
    """As text '10:00+05:00' sorts after '06:00Z'; as time it is earlier."""
    early = api.exploratory_test(1, end_at="2026-03-01T10:00:00+05:00")  # 05:00 UTC
    late = api.exploratory_test(2, end_at="2026-03-01T06:00:00Z")  # 06:00 UTC
    later = api.exploratory_test(3, end_at="2026-03-01T01:30:00-05:00")  # 06:30 UTC
    save.save_tests(product, [early, late, later], now=now)
    tests, total = queries.list_tests(product_ids=[product])
    assert total == 3
    assert [t.id for t in tests] == [3, 2, 1]
    assert tests[2].end_at == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)


@pytest.mark.sqlite_only  # reads the file's bytes; tests/sync checks PostgreSQL's rows
def test_credentials_never_reach_the_database_file(product, db_path, now) -> None:
    """Only the environment's id and title are kept; the password is nowhere on disk."""
    save.save_tests(product, [api.exploratory_test(101)], now=now)
    assert queries.get_test(101).raw["test_environment"] == {"id": 77, "title": "Staging"}
    on_disk = b"".join(p.read_bytes() for p in db_path.parent.glob("cache.db*"))
    assert on_disk  # the files were read
    assert api.PASSWORD.encode() not in on_disk
    assert api.ENV_USERNAME.encode() not in on_disk


def test_test_features_are_replaced_when_a_test_changes(product, now) -> None:
    """The test's feature list is the truth: a removed test feature is deleted."""
    features = [api.test_feature_item(1001, 501), api.test_feature_item(1002, 502, "Search")]
    save.save_tests(product, [api.exploratory_test(101, features=features)], now=now)
    assert {tf.feature_id for tf in models.TestFeature.select()} == {501, 502}
    save.save_tests(product, [api.exploratory_test(101, features=features[1:])], now=now)
    rows = [(tf.id, tf.test_id, tf.feature_id, tf.title) for tf in models.TestFeature.select()]
    assert rows == [(1002, 101, 502, "Search")]


def test_customers_are_unique_per_kind_and_name_and_keep_first_seen(product, now) -> None:
    """A customer named on many tests is one user; last_seen_at moves, first_seen_at stays."""
    page = [
        api.exploratory_test(101, created_by="Carla Customer", submitted_by="Carla Customer"),
        api.exploratory_test(102, created_by="Carla Customer", submitted_by=None),
    ]
    save.save_tests(product, page, now=now)
    save.save_tests(product, page, now=now + timedelta(days=1))
    users = list(User.select())
    assert [(u.kind, u.name) for u in users] == [("customer", "Carla Customer")]
    assert users[0].first_seen_at == now
    assert users[0].last_seen_at == now + timedelta(days=1)


def test_a_status_change_keeps_bugs_synced_at_but_clears_bugs_final(product, now) -> None:
    """bugs_final holds only while the test stays in a final status."""
    save.save_tests(product, [api.exploratory_test(101, status="archived")], now=now)
    save.save_bugs([101], {101: []}, now=now)
    assert queries.get_test(101).bugs_final is True
    save.save_tests(product, [api.exploratory_test(101, status="archived", title="x")], now=now)
    assert queries.get_test(101).bugs_final is True
    save.save_tests(product, [api.exploratory_test(101, status="locked")], now=now)
    stored = queries.get_test(101)
    assert stored.bugs_final is False
    assert stored.bugs_synced_at == now


def test_saving_tests_of_an_unknown_product_raises_store_error(db, now) -> None:
    """The engine must save products first; the message says so."""
    with pytest.raises(StoreError, match="save the products first"):
        save.save_tests(7, [api.exploratory_test(1, product_id=7)], now=now)
