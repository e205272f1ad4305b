"""Moving the simulated clock: new tests, lifecycle, new bugs, auto-accept, deletions."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from testio_sync.simulator import Simulator
from testio_sync.simulator.model import AUTO_ACCEPT_AFTER


def test_advance_moves_now_and_returns_a_summary(start_time):
    sim = Simulator(now=start_time)
    summary = sim.advance(hours=6)
    assert sim.now == start_time + timedelta(hours=6)
    assert datetime.fromisoformat(summary["now"]) == sim.now
    assert datetime.fromisoformat(summary["previous_now"]) == start_time
    assert sim.truth()["now"] == summary["now"]


def test_new_tests_appear_at_the_top_of_their_products_list(start_simulator):
    """A day later every product has a new test, and it comes before all older ones."""
    running = start_simulator()
    world = running.sim.world
    summary = running.sim.advance(hours=24)
    assert summary["new_tests"]
    new_by_product = {world.tests[tid].product_id for tid in summary["new_tests"]}
    assert new_by_product == set(world.products)
    for product_id in world.products:
        first = running.get(f"/products/{product_id}/exploratory_tests", page=1, per_page=1)
        newest = first["exploratory_tests"][0]
        assert newest["id"] in summary["new_tests"]
        assert newest["status"] in {"initialized", "waiting", "cancelled"}


def test_tests_move_through_the_lifecycle_and_never_leave_archived_or_cancelled(start_time):
    sim = Simulator(scale="seed", now=start_time)
    before = {tid: t.status for tid, t in sim.world.tests.items()}
    moves: Counter[str] = Counter()
    for _ in range(50):
        moves.update(sim.advance(hours=24)["test_status_changes"])
    after = {tid: t.status for tid, t in sim.world.tests.items()}
    for move in ("initialized->waiting", "waiting->running", "running->locked", "locked->archived"):
        assert moves[move] > 0, move
    assert not {m for m in moves if m.startswith(("archived->", "cancelled->"))}
    for tid, status in before.items():
        if status in ("archived", "cancelled") and tid in after:
            assert after[tid] == status
        if status == "locked" and tid in after:
            assert after[tid] == "archived"  # 4-6 weeks after the end, and 50 days passed


def test_running_tests_get_new_bugs(start_time):
    sim = Simulator(now=start_time)
    running_ids = {tid for tid, t in sim.world.tests.items() if t.status == "running"}
    bugs_before = set(sim.world.bugs)
    summary = sim.advance(hours=48)
    new_bugs = [b for bid, b in sim.world.bugs.items() if bid not in bugs_before]
    assert summary["new_bugs"] == len(new_bugs) > 0
    assert {b.test_id for b in new_bugs} & running_ids
    assert all(b.status == "forwarded" or b.reported_at < sim.world.now for b in new_bugs)
    assert min(b.id for b in new_bugs) > max(bugs_before)


def test_bugs_forwarded_for_ten_days_become_auto_accepted(start_time):
    sim = Simulator(scale="seed", now=start_time)
    forwarded = [b.id for b in sim.world.bugs.values() if b.status == "forwarded"]
    sim.advance(hours=AUTO_ACCEPT_AFTER / 3600 + 1)
    statuses = {(sim.world.bugs[b].status, sim.world.bugs[b].auto_accepted) for b in forwarded}
    assert ("forwarded", False) not in statuses
    assert ("accepted", True) in statuses
    assert {"accepted", "rejected"} <= {status for status, _ in statuses}


def test_deleted_tests_and_their_bugs_vanish_from_every_endpoint(start_simulator):
    running = start_simulator()
    world = running.sim.world
    victims = {
        tid: (world.tests[tid].product_id, list(world.bugs_by_test[tid])) for tid in world.tests
    }
    summary = running.sim.advance(hours=48)
    assert summary["deleted_tests"]
    for test_id in summary["deleted_tests"]:
        product_id, bug_ids = victims[test_id]
        assert running.api.get(f"/exploratory_tests/{test_id}").status_code == 404
        assert test_id not in {t["id"] for t in running.tests_of(product_id)}
        assert running.get("/bugs", filter_test_cycle_ids=str(test_id))["bugs"] == []
        for bug_id in bug_ids:
            assert running.api.get(f"/bugs/{bug_id}").status_code == 404
    assert summary["deleted_bugs"] == sum(len(victims[t][1]) for t in summary["deleted_tests"])


def test_features_are_added_and_renamed_now_and_then(start_simulator):
    running = start_simulator(scale="seed", seed=1)
    world = running.sim.world
    titles = {}
    for pid in world.products:
        product = world.products[pid]
        paths = (
            [f"/products/{pid}/sections/{s.id}/features" for s in product.sections]
            if product.sectioned
            else [f"/products/{pid}/features"]
        )
        for path in paths:
            titles.update({f["id"]: f["title"] for f in running.get(path)["features"]})
    summary = running.sim.advance(hours=24 * 7)
    assert summary["new_features"] and summary["renamed_features"]
    assert running.sim.truth()["features"] == len(titles) + len(summary["new_features"])
    renamed = world.features[summary["renamed_features"][0]]
    product = world.products[renamed.product_id]
    section_id = renamed.section_ids[0]
    path = (
        f"/products/{product.id}/sections/{section_id}/features"
        if product.sectioned
        else f"/products/{product.id}/features"
    )
    now_titles = {f["id"]: f["title"] for f in running.get(path)["features"]}
    assert now_titles[renamed.id] != titles[renamed.id]


def test_a_running_tests_end_can_move(start_time):
    sim = Simulator(scale="seed", now=start_time)
    ends = {tid: t.end_at for tid, t in sim.world.tests.items()}
    summary = sim.advance(hours=72)
    assert summary["extended_tests"]
    assert all(sim.world.tests[t].end_at > ends[t] for t in summary["extended_tests"])


def test_the_same_advances_give_the_same_bytes(start_simulator):
    first, second = start_simulator(seed=4), start_simulator(seed=4)
    for hours in (5, 30, 200):
        assert first.sim.advance(hours) == second.sim.advance(hours)
    product_id = next(iter(first.sim.world.products))
    path = f"/products/{product_id}/exploratory_tests"
    assert first.api.get(path).content == second.api.get(path).content
    assert first.control.get("/truth").content == second.control.get("/truth").content


def test_advance_over_http_matches_the_python_call(start_simulator):
    running = start_simulator()
    response = running.control.post("/advance", json={"hours": 12})
    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["now"]) == running.sim.now
    assert running.sim.now.tzinfo is not None
    assert running.sim.now.astimezone(UTC) == running.sim.now


@pytest.mark.parametrize("body", [{"hours": -1}, {"hours": "2"}, {}, [1], {"hours": 10**6}])
def test_advance_refuses_bad_hours_with_400(start_simulator, body):
    running = start_simulator()
    assert running.control.post("/advance", json=body).status_code == 400
