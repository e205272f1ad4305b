"""Products and features: upserts, sections, change detection, deletion of unlisted rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from testio_sync.errors import StoreError
from testio_sync.store import queries, save
from testio_sync.store.models import Feature, Product

from . import payloads as api


def test_saving_the_same_products_twice_counts_new_then_unchanged(db, now: datetime) -> None:
    """A re-run after a crash converges: same rows, nothing reported as changed."""
    products = [api.product(1), api.product(2, name="App", sectioned=True)]
    first = save.save_products(products, now=now)
    second = save.save_products(products, now=now + timedelta(hours=1))
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    assert sorted(first.new_ids) == [1, 2]
    assert (second.new, second.updated, second.unchanged) == (0, 0, 2)
    assert Product.select().count() == 2
    assert queries.find_product(1).synced_at == now + timedelta(hours=1)


def test_a_changed_product_is_counted_updated_and_keeps_its_phase_times(db, now) -> None:
    """Renaming a product is an update; features/tests sync times survive it."""
    save.save_products([api.product(1)], now=now)
    save.touch_product(1, now=now, field="tests_synced_at")
    save.save_features(1, [api.feature(11)], now=now)
    counts = save.save_products([api.product(1, name="Renamed")], now=now + timedelta(days=1))
    assert counts.updated_ids == [1]
    stored = queries.find_product(1)
    assert stored.name == "Renamed"
    assert stored.tests_synced_at == now
    assert stored.features_synced_at == now


def test_sectioned_products_take_section_ids_from_sections(db, now) -> None:
    """Sectioned: real sections listed, or more than one in sections_with_default."""
    plain = api.product(1)
    sectioned = api.product(2, sectioned=True)
    only_default_list = api.product(3)
    only_default_list["sections_with_default"].append(api.section(99, "Extra"))
    save.save_products([plain, sectioned, only_default_list], now=now)
    rows = {p.id: (p.is_sectioned, p.section_ids) for p in queries.list_products()}
    assert rows == {1: (False, [10]), 2: (True, [21, 22]), 3: (True, [30, 99])}


def test_features_keep_their_section_lists_and_unlisted_ones_are_deleted(db, now) -> None:
    """The feature list is complete: a feature gone from the API goes from the store."""
    save.save_products([api.product(2, sectioned=True)], now=now)
    first = save.save_features(
        2,
        [api.feature(201, section_ids=[21, 22]), api.feature(202, section_ids=[22])],
        now=now,
    )
    assert first.new == 2
    second = save.save_features(2, [api.feature(201, section_ids=[22, 21])], now=now)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 1)
    assert second.deleted_ids == [202]
    stored = Feature.get_by_id(201)
    assert stored.section_ids == [21, 22]
    assert "section_ids" not in stored.raw
    assert queries.find_product(2).features_synced_at == now


def test_a_feature_moving_to_another_section_counts_as_updated(db, now) -> None:
    """Section membership is part of a feature's content."""
    save.save_products([api.product(2, sectioned=True)], now=now)
    save.save_features(2, [api.feature(201, section_ids=[21])], now=now)
    counts = save.save_features(2, [api.feature(201, section_ids=[21, 22])], now=now)
    assert counts.updated_ids == [201]


def test_features_repeated_in_one_list_are_stored_once(db, now) -> None:
    """A feature listed twice (two sections, caller did not merge) is one row, one count."""
    save.save_products([api.product(2, sectioned=True)], now=now)
    counts = save.save_features(
        2, [api.feature(201, section_ids=[21]), api.feature(201, section_ids=[21])], now=now
    )
    assert counts.new == 1
    assert Feature.select().count() == 1


def test_features_of_other_products_are_untouched(db, now) -> None:
    """Deleting unlisted features is scoped to the product being saved."""
    save.save_products([api.product(1), api.product(2)], now=now)
    save.save_features(1, [api.feature(11)], now=now)
    save.save_features(2, [api.feature(21)], now=now)
    save.save_features(2, [], now=now)
    assert [f.id for f in Feature.select()] == [11]


def test_saving_features_of_an_unknown_product_raises_store_error(db, now) -> None:
    """A clear StoreError instead of a foreign key failure."""
    with pytest.raises(StoreError, match="Product 404 is not stored"):
        save.save_features(404, [api.feature(1)], now=now)


def test_touch_product_sets_one_phase_time_and_refuses_other_columns(db, now) -> None:
    """Only the two phase times may be stamped."""
    save.save_products([api.product(1)], now=now)
    save.touch_product(1, now=now + timedelta(minutes=5), field="features_synced_at")
    assert queries.find_product(1).features_synced_at == now + timedelta(minutes=5)
    with pytest.raises(ValueError, match="field"):
        save.touch_product(1, now=now, field="name")
    with pytest.raises(StoreError):
        save.touch_product(9, now=now, field="tests_synced_at")


class _Abort(Exception):
    pass


def test_saves_join_the_callers_connection_and_transaction(db, now) -> None:
    """Inside a caller's atomic block a save is a savepoint: rolling back undoes it."""
    with db.connection_context():
        with pytest.raises(_Abort), db.atomic():
            save.save_products([api.product(1)], now=now)
            assert not db.is_closed()
            raise _Abort
        assert not db.is_closed()
        assert queries.product_ids() == []
    assert db.is_closed()
