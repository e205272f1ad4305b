"""Generated data: exact counts per scale, coverage of every enum value, determinism."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from testio_sync.simulator import Simulator
from testio_sync.simulator.vocabulary import (
    PRODUCT_TYPES,
    REJECT_KEYS,
    SEVERITIES,
    TEST_STATUSES,
    TESTING_TYPES,
)


@pytest.fixture(scope="module")
def seed_sim(start_time) -> Simulator:
    return Simulator(scale="seed", seed=1, now=start_time)


def test_seed_scale_has_the_counts_of_a_typical_customer(seed_sim):
    """6 products, 724 tests, 8,056 bugs, 298 features, 45 users: exactly."""
    truth = seed_sim.truth()
    assert {k: truth[k] for k in ("products", "tests", "bugs", "features", "users")} == {
        "products": 6,
        "tests": 724,
        "bugs": 8056,
        "features": 298,
        "users": 45,
    }
    assert truth["testers"] + truth["customer_users"] == 45
    assert sum(truth["bugs_by_status"].values()) == sum(truth["bugs_by_severity"].values()) == 8056
    assert sum(p["tests"] for p in truth["per_product"].values()) == 724


def test_seed_scale_has_the_shapes_a_client_must_handle(seed_sim):
    """Sectioned products (one with 3+ sections), a shared feature, one dominant product."""
    world = seed_sim.world
    sectioned = [p for p in world.products.values() if p.sectioned]
    assert len(sectioned) >= 2
    assert max(len(p.sections) for p in sectioned) >= 3
    assert any(len(f.section_ids) > 1 for f in world.features.values())
    assert any(not p.lists_sections for p in sectioned)  # sections only in sections_with_default
    largest = max(p["tests"] for p in seed_sim.truth()["per_product"].values())
    assert 250 <= largest <= 300
    assert {p.type for p in world.products.values()} == set(PRODUCT_TYPES)


def test_large_scale_is_ten_times_seed_with_one_very_long_history(start_time):
    sim = Simulator(scale="large", seed=1, now=start_time)
    truth = sim.truth()
    assert (truth["products"], truth["tests"], truth["bugs"], truth["features"]) == (
        60,
        7240,
        80560,
        2980,
    )
    assert max(p["tests"] for p in truth["per_product"].values()) > 1500


def test_explicit_counts_override_the_scale(start_time):
    sim = Simulator(scale="tiny", products=2, tests=12, bugs=30, features=5, now=start_time)
    truth = sim.truth()
    assert (truth["products"], truth["tests"], truth["bugs"], truth["features"]) == (2, 12, 30, 5)


@pytest.mark.parametrize(
    "kwargs",
    [{"scale": "huge"}, {"products": 0}, {"tests": 0, "bugs": 5}, {"bugs": -1}],
)
def test_impossible_scales_are_refused(kwargs, start_time):
    with pytest.raises(ValueError):
        Simulator(now=start_time, **kwargs)


def test_a_naive_start_time_is_refused(start_time):
    with pytest.raises(ValueError, match="timezone"):
        Simulator(now=start_time.replace(tzinfo=None))


@pytest.mark.parametrize("scale", ["tiny", "seed"])
def test_every_status_and_enum_value_occurs(scale, start_time):
    world = Simulator(scale=scale, seed=5, now=start_time).world
    tests, bugs = world.tests.values(), world.bugs.values()
    assert {t.status for t in tests} == set(TEST_STATUSES)
    assert {t.testing_type for t in tests} == set(TESTING_TYPES)
    assert {t.review_status() for t in tests} == {
        "not_finalized",
        "review_initialized",
        "review_successful",
        "review_failed",
    }
    assert {b.severity for b in bugs} == set(SEVERITIES)
    assert {b.bucket for b in bugs} == {"forwarded", "accepted", "auto_accepted", "rejected"}
    assert {b.reject_reason for b in bugs if b.status == "rejected"} == set(REJECT_KEYS)


def test_bugs_exist_only_on_tests_that_have_started(seed_sim):
    world = seed_sim.world
    statuses = Counter(world.tests[b.test_id].status for b in world.bugs.values())
    assert set(statuses) <= {"running", "locked", "archived", "customer_finalized"}
    assert all(b.reported_at <= world.now for b in world.bugs.values())


def test_ids_are_global_and_not_contiguous_per_product(seed_sim):
    """Ids grow with gaps across products, so an id says nothing about product or age."""
    world = seed_sim.world
    test_ids = sorted(world.tests)
    assert len(set(test_ids)) == len(test_ids)
    assert any(b - a > 1 for a, b in pairwise(test_ids))
    first_products = [world.tests[tid].product_id for tid in test_ids[:20]]
    assert len(set(first_products)) > 1
    assert not set(world.tests) & set(world.bugs)


def test_tester_and_customer_names_never_collide(seed_sim):
    """Users dedupe by (kind, name), and the two kinds use different names."""
    world = seed_sim.world
    testers = {b.author for b in world.bugs.values()}
    customers = {t.created_by for t in world.tests.values()}
    customers |= {t.submitted_by for t in world.tests.values() if t.submitted_by}
    assert (len(testers), len(customers)) == (37, 8)
    assert not testers & customers


def test_the_same_seed_and_clock_give_identical_bytes(start_simulator):
    """Two simulators built alike answer byte for byte the same."""
    first, second = start_simulator(seed=11), start_simulator(seed=11)
    product_id = next(iter(first.sim.world.products))
    test_ids = ",".join(str(t) for t in list(first.sim.world.tests)[:10])
    for path, params in [
        ("/products", {}),
        (f"/products/{product_id}/exploratory_tests", {"page": 1, "per_page": 25}),
        ("/bugs", {"filter_test_cycle_ids": test_ids}),
    ]:
        assert first.api.get(path, params=params).content == (
            second.api.get(path, params=params).content
        )


def test_another_seed_gives_other_data(start_time):
    one = Simulator(seed=1, now=start_time).world
    two = Simulator(seed=2, now=start_time).world
    assert sorted(one.tests) != sorted(two.tests)
