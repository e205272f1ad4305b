"""Pagination of ``products/{pid}/exploratory_tests``: order, end of list, the 150 rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest


def _largest_product(running) -> int:
    per_product = running.sim.truth()["per_product"]
    return int(max(per_product, key=lambda pid: per_product[pid]["tests"]))


def _page(running, product_id: int, page: int, per_page: int | None = None) -> list[dict]:
    params = {"page": page} if per_page is None else {"page": page, "per_page": per_page}
    return running.get(f"/products/{product_id}/exploratory_tests", **params)["exploratory_tests"]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_pages_follow_end_at_descending_across_page_boundaries(seed_scale):
    """Walking all pages gives every test of the product once, newest ``end_at`` first."""
    product_id = _largest_product(seed_scale)
    tests = seed_scale.tests_of(product_id)
    ends = [_utc(t["end_at"]) for t in tests]
    assert ends == sorted(ends, reverse=True)
    assert len({t["id"] for t in tests}) == len(tests)
    assert len(tests) == seed_scale.sim.truth()["per_product"][str(product_id)]["tests"]


def test_ids_and_start_dates_are_not_in_page_order(seed_scale):
    """Only ``end_at`` is ordered; a client must not rely on ids or ``start_at``."""
    tests = seed_scale.tests_of(_largest_product(seed_scale))
    ids = [t["id"] for t in tests]
    starts = [_utc(t["start_at"]) for t in tests]
    assert ids != sorted(ids, reverse=True)
    assert starts != sorted(starts, reverse=True)


def test_tests_that_have_not_ended_come_first(seed_scale):
    """Tests with a future ``end_at`` (running, waiting, initialized) lead the first page."""
    now = seed_scale.sim.now
    tests = seed_scale.tests_of(_largest_product(seed_scale))
    future = [t for t in tests if _utc(t["end_at"]) > now]
    assert future and tests[: len(future)] == future
    assert {"running", "waiting", "initialized"} <= {t["status"] for t in future}


def test_the_last_page_is_short_and_the_page_after_it_is_empty(seed_scale):
    product_id = _largest_product(seed_scale)
    total = seed_scale.sim.truth()["per_product"][str(product_id)]["tests"]
    last = total // 25 + 1
    assert len(_page(seed_scale, product_id, last)) == total % 25
    assert _page(seed_scale, product_id, last + 1) == []


def test_per_page_defaults_to_25(seed_scale):
    product_id = _largest_product(seed_scale)
    assert _page(seed_scale, product_id, 2) == _page(seed_scale, product_id, 2, per_page=25)
    assert len(_page(seed_scale, product_id, 2)) == 25


def test_any_page_size_walks_the_same_sequence(seed_scale):
    """Pages of 7 and pages of 25 concatenate to the same list."""
    product_id = _largest_product(seed_scale)
    by_seven = [t["id"] for page in range(1, 8) for t in _page(seed_scale, product_id, page, 7)]
    by_25 = [t["id"] for t in _page(seed_scale, product_id, 1) + _page(seed_scale, product_id, 2)]
    assert by_seven == by_25[: len(by_seven)]


def test_without_a_page_only_the_newest_150_tests_come_back(seed_scale):
    product_id = _largest_product(seed_scale)
    unpaged = seed_scale.get(f"/products/{product_id}/exploratory_tests")["exploratory_tests"]
    walked = seed_scale.tests_of(product_id)
    assert len(walked) > 150
    assert [t["id"] for t in unpaged] == [t["id"] for t in walked[:150]]


def test_a_small_product_without_a_page_returns_all_its_tests(seed_scale):
    per_product = seed_scale.sim.truth()["per_product"]
    product_id = int(min(per_product, key=lambda pid: per_product[pid]["tests"]))
    unpaged = seed_scale.get(f"/products/{product_id}/exploratory_tests")["exploratory_tests"]
    assert len(unpaged) == per_product[str(product_id)]["tests"] < 150


@pytest.mark.parametrize(
    "params", [{"page": 0}, {"page": "x"}, {"page": 1, "per_page": 0}, {"page": 1, "per_page": "a"}]
)
def test_bad_page_parameters_answer_400(seed_scale, params):
    product_id = _largest_product(seed_scale)
    response = seed_scale.api.get(f"/products/{product_id}/exploratory_tests", params=params)
    assert response.status_code == 400
