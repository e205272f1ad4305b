"""Fault injection: each fault of the contract, switched at start-up, over HTTP or directly."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from testio_sync.simulator import FaultConfig


def _product_with_most_tests(running) -> int:
    per_product = running.sim.truth()["per_product"]
    return int(max(per_product, key=lambda pid: per_product[pid]["tests"]))


def test_latency_delays_every_answer(start_simulator):
    """10 concurrent requests at 200 ms all answer, none sooner than the latency.

    That they overlap (about 200 ms together, not 2 s) is a timing:
    scripts/bench_simulator.py measures it against its ceiling.
    """
    running = start_simulator(latency_ms=200)
    headers = {"Authorization": "Token test-token"}

    async def ten_at_once() -> tuple[float, list[int]]:
        async with httpx.AsyncClient(base_url=running.server.base_url, headers=headers) as client:
            started = time.perf_counter()
            answers = await asyncio.gather(*(client.get("/products") for _ in range(10)))
            return time.perf_counter() - started, [a.status_code for a in answers]

    elapsed, statuses = asyncio.run(ten_at_once())
    assert statuses == [200] * 10
    assert elapsed >= 0.2  # the delay was applied; the simulator never answers earlier


def test_control_endpoints_get_no_latency_or_faults(start_simulator):
    running = start_simulator(faults=FaultConfig(error_rate=1.0, token_revoked=True))
    for path in ("/truth", "/stats", "/faults", "/health"):
        assert running.control.get(path).status_code == 200


def test_the_rate_limit_answers_429_with_retry_after_in_seconds(start_simulator):
    running = start_simulator(faults=FaultConfig(rate_limit_rps=1))
    assert running.api.get("/products").status_code == 200
    limited = running.api.get("/products")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_retry_after_can_be_an_http_date(start_simulator):
    running = start_simulator(faults=FaultConfig(rate_limit_rps=1, retry_after_http_date=True))
    running.api.get("/products")
    limited = running.api.get("/products")
    assert limited.status_code == 429
    assert parsedate_to_datetime(limited.headers["Retry-After"]).tzinfo is not None


def test_error_rate_answers_gateway_errors_for_that_share_of_requests(start_simulator):
    running = start_simulator(faults=FaultConfig(error_rate=1.0))
    statuses = {running.api.get("/products").status_code for _ in range(20)}
    assert statuses <= {502, 503, 504} and len(statuses) > 1
    running.sim.update_faults(error_rate=0.5)
    statuses = [running.api.get("/products").status_code for _ in range(40)]
    assert 200 in statuses and set(statuses) - {200}


def test_a_broken_test_fails_every_page_holding_it_and_its_detail(start_simulator):
    """Pages with the broken test answer 500 at any size; size 1 isolates it."""
    running = start_simulator(scale="seed", seed=1)
    product_id = _product_with_most_tests(running)
    order = running.sim.world.ordered_test_ids(product_id)
    broken = order[30]  # page 2 at 25 per page
    running.sim.set_faults(FaultConfig(broken_test_ids=(broken,)))
    path = f"/products/{product_id}/exploratory_tests"
    for per_page, page in ((25, 2), (10, 4), (5, 7), (2, 16)):
        response = running.api.get(path, params={"page": page, "per_page": per_page})
        assert response.status_code == 500
    assert running.api.get(path, params={"page": 1}).status_code == 200
    assert running.api.get(path).status_code == 500  # the newest 150 include it
    for index in range(25, 50):
        response = running.api.get(path, params={"page": index + 1, "per_page": 1})
        assert response.status_code == (500 if index == 30 else 200)
    assert running.api.get(f"/exploratory_tests/{broken}").status_code == 500


def test_a_failing_product_answers_500_for_every_page_even_past_its_end(start_simulator):
    """A broken list, not a broken test: every size, every page; other products are fine."""
    running = start_simulator(scale="seed", seed=1)
    failing = _product_with_most_tests(running)
    length = len(running.sim.world.ordered_test_ids(failing))
    running.sim.update_faults(failing_product_ids=[failing])
    path = f"/products/{failing}/exploratory_tests"
    for per_page, page in ((25, 1), (1, 1), (1, length + 1), (25, length)):
        response = running.api.get(path, params={"page": page, "per_page": per_page})
        assert response.status_code == 500
    other = next(pid for pid in running.sim.world.products if pid != failing)
    response = running.api.get(f"/products/{other}/exploratory_tests", params={"page": 1})
    assert response.status_code == 200


def test_broken_tests_by_count_are_picked_among_archived_tests_deterministically(
    start_simulator,
):
    first = start_simulator(faults=FaultConfig(broken_tests=2))
    second = start_simulator(faults=FaultConfig(broken_tests=2))
    picked = first.control.get("/faults").json()["resolved_broken_test_ids"]
    assert len(picked) == 2
    assert picked == second.control.get("/faults").json()["resolved_broken_test_ids"]
    assert {first.sim.world.tests[t].status for t in picked} == {"archived"}


def test_large_bug_batches_answer_524_above_the_limit(start_simulator):
    running = start_simulator(faults=FaultConfig(bug_batch_limit=3))
    ids = [str(t) for t in list(running.sim.world.tests)[:4]]
    assert (
        running.api.get("/bugs", params={"filter_test_cycle_ids": ",".join(ids)}).status_code == 524
    )
    ok = running.api.get("/bugs", params={"filter_test_cycle_ids": ",".join(ids[:3])})
    assert ok.status_code == 200


def test_a_hang_holds_the_answer_past_the_clients_timeout(start_simulator):
    running = start_simulator(faults=FaultConfig(hang_rate=1.0, hang_seconds=2))
    with pytest.raises(httpx.ReadTimeout):
        running.api.get("/products", timeout=0.3)


def test_malformed_answers_are_200_without_usable_json(start_simulator):
    running = start_simulator(faults=FaultConfig(malformed_rate=1.0))
    kinds = set()
    for _ in range(12):
        response = running.api.get("/products")
        assert response.status_code == 200
        try:
            body = response.json()
        except ValueError:
            kinds.add("not_json")
        else:
            assert "products" not in body
            kinds.add("no_envelope")
    assert kinds == {"not_json", "no_envelope"}


def test_a_revoked_token_answers_401_from_then_on(start_simulator):
    running = start_simulator()
    assert running.api.get("/products").status_code == 200
    response = running.control.post("/faults", json={"token_revoked": True})
    assert response.json()["token_revoked"] is True
    assert running.api.get("/products").status_code == 401
    assert running.api.get("/bugs/reject_reasons").status_code == 401


def test_faults_take_partial_updates_and_delete_clears_them(start_simulator):
    running = start_simulator()
    running.control.post("/faults", json={"error_rate": 0.25, "broken_test_ids": [1, 2]})
    current = running.control.post("/faults", json={"latency_ms": 5}).json()
    assert (current["error_rate"], current["broken_test_ids"], current["latency_ms"]) == (
        0.25,
        [1, 2],
        5,
    )
    assert running.sim.faults.error_rate == 0.25
    assert running.control.delete("/faults").json() == {
        **FaultConfig().to_dict(),
        "resolved_broken_test_ids": [],
    }


@pytest.mark.parametrize(
    "body",
    [{"error_rate": 2}, {"nope": 1}, {"token_revoked": "yes"}, {"broken_tests": 1.5}, [1]],
)
def test_bad_fault_updates_answer_400_and_change_nothing(start_simulator, body):
    running = start_simulator()
    assert running.control.post("/faults", json=body).status_code == 400
    assert running.sim.faults == FaultConfig()


def test_update_faults_in_python_validates_too(start_simulator):
    running = start_simulator()
    with pytest.raises(ValueError, match="between 0 and 1"):
        running.sim.update_faults(hang_rate=1.5)
    assert running.sim.update_faults(hang_rate=0.5).hang_rate == 0.5
    assert running.sim.clear_faults() == FaultConfig()
