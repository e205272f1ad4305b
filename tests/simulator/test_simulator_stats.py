"""Request counters: per endpoint (route name) and per status, control routes excluded."""

from __future__ import annotations


def test_stats_count_requests_per_endpoint_and_status(start_simulator):
    running = start_simulator()
    world = running.sim.world
    product_id = next(iter(world.products))
    test_id = next(iter(world.tests))
    running.api.get("/products")
    running.api.get(f"/products/{product_id}")
    running.api.get(f"/products/{product_id}/exploratory_tests", params={"page": 1})
    running.api.get(f"/exploratory_tests/{test_id}")
    running.api.get("/exploratory_tests/1")
    running.api.get("/bugs", params={"filter_test_cycle_ids": str(test_id)})
    running.api.get("/bugs/reject_reasons")
    running.api.get("/nowhere")
    stats = running.control.get("/stats").json()
    assert stats["total"] == 8
    assert stats["by_endpoint"] == {
        "bugs": 1,
        "exploratory_test": 2,
        "exploratory_tests": 1,
        "product": 1,
        "products": 1,
        "reject_reasons": 1,
        "unknown": 1,
    }
    assert stats["by_status"] == {"200": 6, "404": 2}
    assert stats["by_endpoint_status"]["exploratory_test"] == {"200": 1, "404": 1}
    assert running.sim.stats() == stats


def test_every_endpoint_has_its_own_name(start_simulator):
    running = start_simulator()
    world = running.sim.world
    plain = next(p for p in world.products.values() if not p.sectioned)
    sectioned = next(p for p in world.products.values() if p.sectioned)
    bug_id = next(iter(world.bugs))
    for path in (
        f"/products/{plain.id}/features",
        f"/products/{sectioned.id}/sections/{sectioned.sections[0].id}/features",
        f"/products/{plain.id}/user_stories",
        f"/bugs/{bug_id}",
    ):
        assert running.api.get(path).status_code == 200
    assert set(running.sim.stats()["by_endpoint"]) == {
        "features",
        "section_features",
        "user_stories",
        "bug",
    }


def test_faulted_and_unauthorised_requests_are_counted_with_their_status(start_simulator):
    running = start_simulator()
    running.sim.update_faults(rate_limit_rps=1)
    running.api.get("/products")
    running.api.get("/products")
    running.api.get("/products", headers={"Authorization": "Token nope"})
    assert running.sim.stats()["by_endpoint_status"]["products"] == {"200": 1, "429": 2}


def test_control_endpoints_are_not_counted_and_reset_clears(start_simulator):
    running = start_simulator()
    running.api.get("/products")
    for path in ("/truth", "/faults", "/stats", "/health"):
        running.control.get(path)
    running.control.post("/advance", json={"hours": 1})
    assert running.sim.stats()["total"] == 1
    reset = running.control.post("/stats/reset").json()
    assert reset == {
        "total": 0,
        "by_endpoint": {},
        "by_status": {},
        "by_endpoint_status": {},
        "faults": {},
    }
    running.api.get("/products")
    running.sim.reset_stats()
    assert running.sim.stats()["total"] == 0


def test_stats_count_the_hangs_and_bad_bodies_a_status_cannot_show():
    """Every request hangs briefly and comes back mangled: both are counted as faults."""
    from testio_sync.simulator import Simulator

    sim = Simulator(scale="tiny", seed=1, token="t")
    sim.update_faults(hang_rate=1.0, hang_seconds=0.01, malformed_rate=1.0)
    with sim.serve(host="127.0.0.1", port=0) as server:
        import httpx

        for _ in range(3):
            httpx.get(server.base_url + "/products", headers={"Authorization": "Token t"})
    assert sim.stats()["faults"] == {"hang": 3, "malformed": 3}
