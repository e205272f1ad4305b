"""Bugs: per-test replacement, typed columns, reject reasons, testers, bugs_final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testio_sync.store import queries, save
from testio_sync.store.models import Bug, User

from . import payloads as api


@pytest.fixture
def tests(db, now: datetime) -> list[int]:
    save.save_products([api.product(1), api.product(2)], now=now)
    save.save_tests(1, [api.exploratory_test(101), api.exploratory_test(102)], now=now)
    save.save_tests(2, [api.exploratory_test(201, product_id=2, status="archived")], now=now)
    return [101, 102, 201]


def test_saving_the_same_bug_lists_twice_counts_new_then_unchanged(tests, now) -> None:
    """Idempotent: the second save changes no row and reports every bug unchanged."""
    bugs = {101: api.bugs_of_every_status(101, 1), 102: [api.bug(9, test_id=102)]}
    first = save.save_bugs([101, 102], bugs, now=now, reject_reasons=api.REJECT_REASONS)
    second = save.save_bugs([101, 102], bugs, now=now, reject_reasons=api.REJECT_REASONS)
    assert (first.new, first.updated, first.unchanged) == (5, 0, 0)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 5)
    assert Bug.select().count() == 5


def test_a_test_bug_list_replaces_the_stored_one(tests, now) -> None:
    """Bugs no longer listed for a test are deleted; other tests' bugs stay."""
    save.save_bugs(
        [101, 102],
        {101: api.bugs_of_every_status(101, 1), 102: [api.bug(9, test_id=102)]},
        now=now,
    )
    changed = api.bug(2, test_id=101, status="rejected")
    counts = save.save_bugs(
        [101], {101: [api.bug(1, test_id=101, severity="low"), changed]}, now=now
    )
    assert counts.deleted_ids == [3, 4]
    assert counts.updated_ids == [2]
    assert counts.unchanged == 1
    assert sorted(b.id for b in Bug.select()) == [1, 2, 9]


def test_a_test_missing_from_the_answer_has_its_bugs_removed(tests, now) -> None:
    """An id in test_ids without a list means the test has no bugs any more."""
    save.save_bugs([101], {101: [api.bug(1, test_id=101)]}, now=now)
    counts = save.save_bugs([101], {}, now=now)
    assert counts.deleted_ids == [1]
    assert Bug.select().count() == 0
    assert queries.get_test(101).bugs_synced_at == now


def test_typed_bug_columns_come_from_the_payload(tests, now) -> None:
    """Product from the test row, feature ids from test_feature, author, UTC time."""
    save.save_bugs(
        [201], {201: [api.bug(5, test_id=201, auto_accepted=True, status="accepted")]}, now=now
    )
    stored = Bug.get_by_id(5)
    assert (stored.test_id, stored.product_id) == (201, 2)
    assert (stored.feature_id, stored.test_feature_id) == (501, 2010)
    assert (stored.status, stored.auto_accepted, stored.severity) == ("accepted", True, "high")
    assert stored.author_name == "Tina Tester"
    assert stored.reported_at == datetime(2026, 2, 28, 9, 15, tzinfo=UTC)
    assert stored.reject_reason is None


def test_rejected_bugs_get_the_reason_whose_default_comment_they_carry(tests, now) -> None:
    """The reason is recovered from the comments; other statuses have none."""
    bugs = api.bugs_of_every_status(101, 1)
    bugs.append(api.bug(6, test_id=101, status="rejected", comments=["No idea why."]))
    save.save_bugs([101], {101: bugs}, now=now, reject_reasons=api.REJECT_REASONS)
    reasons = {b.id: b.reject_reason for b in Bug.select()}
    assert reasons == {1: None, 2: None, 3: None, 4: "not_reproducible", 6: None}


def test_bugs_without_a_test_feature_store_null_feature_ids(tests, now) -> None:
    """Bugs of test-case runs may lack test_feature."""
    save.save_bugs([101], {101: [api.bug(1, test_id=101, feature_id=None)]}, now=now)
    stored = Bug.get_by_id(1)
    assert (stored.feature_id, stored.test_feature_id) == (None, None)


def test_testers_are_unique_users_apart_from_customers_of_the_same_name(tests, now) -> None:
    """Users are unique per (kind, name): the same name can be a tester and a customer."""
    bugs = [
        api.bug(1, test_id=101, author="Carla Customer"),
        api.bug(2, test_id=101, author="Tina Tester"),
        api.bug(3, test_id=101, author="Tina Tester"),
        api.bug(4, test_id=101, author=None),
    ]
    save.save_bugs([101], {101: bugs}, now=now)
    save.save_bugs([101], {101: bugs}, now=now + timedelta(hours=2))
    pairs = sorted((u.kind, u.name) for u in User.select())
    assert pairs == [
        ("customer", "Carla Customer"),
        ("tester", "Carla Customer"),
        ("tester", "Tina Tester"),
    ]


def test_bugs_become_final_only_for_archived_or_cancelled_tests(tests, now) -> None:
    """bugs_final is set from the test's status at fetch time; bugs_synced_at always."""
    save.save_bugs([101, 201], {101: [], 201: []}, now=now)
    running, archived = queries.get_test(101), queries.get_test(201)
    assert (running.bugs_final, archived.bugs_final) == (False, True)
    assert running.bugs_synced_at == archived.bugs_synced_at == now
    assert queries.get_test(102).bugs_synced_at is None


def test_bug_lists_for_unknown_tests_are_skipped_not_fatal(tests, now) -> None:
    """An id without a stored test is reported back; the known ones are saved."""
    counts = save.save_bugs(
        [999, 101], {999: [api.bug(1, test_id=999)], 101: [api.bug(2, test_id=101)]}, now=now
    )
    assert counts.skipped_ids == [999]
    assert counts.new_ids == [2]
    assert [b.id for b in Bug.select()] == [2]
