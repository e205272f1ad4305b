"""Deletion, reconciliation, wipe, broken tests and metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testio_sync.store import models, queries, save
from testio_sync.store.models import (
    BrokenTest,
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    SyncEvent,
    User,
)

from . import payloads as api


@pytest.fixture
def filled(db, now: datetime) -> None:
    """Two products, each with a feature, two tests, bugs, and a broken test."""
    save.save_products([api.product(1), api.product(2)], now=now)
    for pid in (1, 2):
        save.save_features(pid, [api.feature(pid * 100)], now=now)
        ids = [pid * 1000 + 1, pid * 1000 + 2]
        save.save_tests(pid, [api.exploratory_test(t, product_id=pid) for t in ids], now=now)
        bugs = {t: api.bugs_of_every_status(t, t * 10) for t in ids}
        save.save_bugs(ids, bugs, now=now, reject_reasons=api.REJECT_REASONS)
        save.record_broken_test(pid, 3, ids[0], None, ids[1], None, now=now)
    save.set_metadata("last_sync_completed", "2026-03-10T12:00:00Z", now=now)
    save.set_metadata("bookmark:1", "x", now=now)
    SyncEvent.create(
        run_id="r1",
        trigger="cli",
        phases=[],
        scope={},
        options={},
        status="succeeded",
        enqueued_at=now,
    )


def test_delete_tests_removes_their_bugs_and_test_features(filled) -> None:
    """No orphan bugs or test features remain."""
    assert save.delete_tests([1001, 1001]) == 1
    assert not Bug.select().where(Bug.test == 1001).exists()
    assert not models.TestFeature.select().where(models.TestFeature.test == 1001).exists()
    assert Bug.select().count() == 12


def test_foreign_key_cascade_is_enforced_by_the_database(filled, db) -> None:
    """Even a raw DELETE of a test takes its bugs along (foreign_keys pragma is on)."""
    with db.connection_context():
        db.execute_sql("DELETE FROM tests WHERE id = 1001")
        assert Bug.select().where(Bug.test == 1001).count() == 0
        assert models.TestFeature.select().where(models.TestFeature.test == 1001).count() == 0


def test_delete_missing_tests_removes_unlisted_tests_with_their_bugs(filled) -> None:
    """Reconciliation after a complete walk is scoped to one product."""
    removed = save.delete_missing_tests(1, {1002})
    assert removed == [1001]
    assert queries.stored_test_ids(1) == {1002}
    assert queries.stored_test_ids(2) == {2001, 2002}
    assert not Bug.select().where(Bug.test == 1001).exists()


def test_wipe_everything_with_bugs_present_keeps_run_history(filled) -> None:
    """A full wipe empties every entity table, forgets the last sync, keeps sync_events."""
    counts = save.wipe()
    assert counts["bugs"] == 16
    assert counts["products"] == 2
    assert counts["users"] == 3
    assert counts["sync_metadata"] == 1
    for model in (Product, Feature, ExploratoryTest, models.TestFeature, Bug, User, BrokenTest):
        assert model.select().count() == 0
    assert SyncEvent.select().count() == 1
    assert queries.get_metadata("last_sync_completed") is None
    assert queries.get_metadata("bookmark:1") == "x"


def test_wipe_of_one_product_leaves_the_others_untouched(filled) -> None:
    """Scoped wipe: that product's rows go, the other product and the users stay."""
    before = queries.entity_counts([2])
    counts = save.wipe([1])
    assert counts == {
        "bugs": 8,
        "test_features": 2,
        "tests": 2,
        "features": 1,
        "broken_tests": 1,
        "products": 1,
    }
    assert queries.product_ids() == [2]
    assert queries.entity_counts([2]) == before
    assert User.select().count() == 3
    assert queries.get_metadata("last_sync_completed") is not None


def test_a_broken_test_is_recorded_once_and_seen_again_reopens_it(db, now) -> None:
    """Upsert on (product, prev, next), also when a neighbour is missing (list edge)."""
    save.save_products([api.product(1)], now=now)
    later = now + timedelta(hours=1)
    save.record_broken_test(1, 0, None, None, 55, "2026-03-01T10:00:00+02:00", now=now)
    save.record_broken_test(1, 0, None, None, 55, "2026-03-01T10:00:00+02:00", now=later)
    rows = queries.list_broken_tests(1)
    assert len(rows) == 1
    assert (rows[0].first_seen_at, rows[0].last_seen_at) == (now, later)
    assert rows[0].next_end_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert save.resolve_broken_tests(1, [], now=later) == 1
    assert queries.list_broken_tests(1) == []
    save.record_broken_test(1, 0, None, None, 55, None, now=later)
    assert queries.list_broken_tests(1)[0].resolved_at is None


def test_resolve_broken_tests_keeps_the_ones_still_failing(db, now) -> None:
    """Only broken tests not seen again in a complete walk are resolved."""
    save.save_products([api.product(1)], now=now)
    save.record_broken_test(1, 3, 10, None, 11, None, now=now)
    save.record_broken_test(1, 7, 20, None, None, None, now=now)
    assert save.resolve_broken_tests(1, [(20, None)], now=now) == 1
    assert [(b.prev_test_id, b.next_test_id) for b in queries.list_broken_tests(1)] == [(20, None)]
    assert len(queries.list_broken_tests(1, unresolved_only=False)) == 2


def test_metadata_is_upserted_by_key(db, now) -> None:
    """set_metadata overwrites; get_metadata reads it back or gives None."""
    assert queries.get_metadata("last_sync_completed") is None
    save.set_metadata("last_sync_completed", "a", now=now)
    save.set_metadata("last_sync_completed", "b", now=now)
    assert queries.get_metadata("last_sync_completed") == "b"
