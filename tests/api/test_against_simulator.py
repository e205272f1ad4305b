"""The client, the page walker and the bug batches against the real simulator over 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from testio_sync.api import (
    ApiClient,
    RetryPolicy,
    TestPage,
    fetch_bugs_batched,
    iter_test_pages,
)
from testio_sync.errors import ApiError, AuthError

from .conftest import SIM_TOKEN, Served
from .support import run


def _section_ids(product: dict[str, Any]) -> list[int]:
    sections = product.get("sections") or []
    with_default = product.get("sections_with_default") or []
    if sections or len(with_default) > 1:
        return [s["id"] for s in (sections or with_default)]
    return []


async def _mirror(client: ApiClient) -> dict[str, Any]:
    """Everything a full sync reads (each test in detail too), counted per product."""
    mirror: dict[str, Any] = {"per_product": {}, "failed_bugs": {}, "broken": []}
    mirror["reject_reasons"] = await client.fetch_reject_reasons()
    for listed in await client.fetch_products():
        product = await client.fetch_product(listed["id"])
        sections = _section_ids(product)
        if sections:
            features = [
                f for s in sections for f in await client.fetch_section_features(product["id"], s)
            ]
        else:
            features = await client.fetch_features(product["id"])
        tests = []
        async for page in iter_test_pages(client, product["id"]):
            tests += page.tests
            mirror["broken"] += page.broken
        details = await asyncio.gather(*(client.fetch_test(t["id"]) for t in tests))
        bugs = await fetch_bugs_batched(client, [t["id"] for t in tests])
        mirror["failed_bugs"].update(bugs.failed)
        mirror["per_product"][str(product["id"])] = {
            "tests": len({t["id"] for t in details}),
            "bugs": sum(len(found) for found in bugs.bugs_by_test.values()),
            "features": len({f["id"] for f in features}),
        }
    return mirror


def _truth_counts(served: Served) -> dict[str, Any]:
    return served.sim.truth()["per_product"]


def _walk(client: ApiClient, product_id: int) -> list[TestPage]:
    async def scenario() -> list[TestPage]:
        async with client:
            return [page async for page in iter_test_pages(client, product_id)]

    return run(scenario())


def _largest_product(served: Served) -> tuple[int, list[int]]:
    world = served.sim.world
    pid = max(world.products, key=lambda p: len(world.ordered_test_ids(p)))
    return pid, world.ordered_test_ids(pid)


def _statuses(served: Served) -> dict[str, int]:
    return served.sim.stats()["by_status"]


def test_a_full_read_matches_the_simulated_world(served: Served) -> None:
    """Products, features (sectioned or not), every test page and every bug arrive complete."""
    mirror = run(_run_with(served.client(), _mirror))
    assert mirror["per_product"] == _truth_counts(served)
    assert mirror["failed_bugs"] == {} and mirror["broken"] == []
    assert len(mirror["reject_reasons"]) == 7


def test_a_forced_walk_returns_every_test_in_api_order_without_credentials(
    served: Served,
) -> None:
    """Page by page to the first short page; environments keep only id and title."""
    pid, ordered = _largest_product(served)
    pages = _walk(served.client(), pid)
    assert len(ordered) > 50
    assert [t["id"] for p in pages for t in p.tests] == ordered
    assert [p.is_last for p in pages] == [False] * (len(pages) - 1) + [True]
    environments = [t["test_environment"] for p in pages for t in p.tests]
    assert all(set(env or {}) <= {"id", "title"} for env in environments)
    assert not any(p.warnings for p in pages)


def test_a_broken_test_is_recorded_and_every_other_test_recovered(served: Served) -> None:
    """Its page answers 500 at every size down to 1; the walk shrinks, records, and goes on."""
    pid, ordered = _largest_product(served)
    broken_id = ordered[30]
    served.sim.update_faults(broken_test_ids=[broken_id])
    pages = _walk(served.client(), pid)
    assert [t["id"] for p in pages for t in p.tests] == [i for i in ordered if i != broken_id]
    assert [(p.recovered, p.is_last) for p in pages] == [
        (False, False),
        (True, False),
        (False, True),
    ]
    (slot,) = [s for p in pages for s in p.broken]
    assert (slot.product_id, slot.position) == (pid, 30)
    assert (slot.prev_test_id, slot.next_test_id) == (ordered[29], ordered[31])
    by_id = {t["id"]: t for p in pages for t in p.tests}
    assert (slot.prev_end_at, slot.next_end_at) == (
        by_id[ordered[29]]["end_at"],
        by_id[ordered[31]]["end_at"],
    )
    assert _statuses(served)["500"] >= 5  # 25, 10, 5, 2 and 1 all failed


def test_a_bug_batch_too_large_for_the_edge_is_split_until_it_fits(served: Served) -> None:
    """With the edge limit at 4 ids, 15-id batches get 524 and are halved; nothing is lost."""
    served.sim.update_faults(bug_batch_limit=4)
    world = served.sim.world
    test_ids = sorted(world.tests)[:40]

    async def scenario(client: ApiClient) -> Any:
        return await fetch_bugs_batched(client, test_ids)

    result = run(_run_with(served.client(), scenario))
    assert result.failed == {}
    assert {t: len(b) for t, b in result.bugs_by_test.items()} == {
        t: len(world.bugs_by_test[t]) for t in test_ids
    }
    assert _statuses(served)["524"] >= 3


def test_five_percent_gateway_errors_are_survived(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """502/503/504 on one request in twenty: the full read still matches the world.

    Every log line of the run (httpx's and httpcore's included) is free of the token.
    """
    caplog.set_level(logging.DEBUG)
    served.sim.update_faults(error_rate=0.05)
    client = served.client()
    mirror = run(_run_with(client, _mirror))
    assert mirror["per_product"] == _truth_counts(served)
    statuses = _statuses(served)
    assert sum(statuses.get(s, 0) for s in ("502", "503", "504")) > 0
    assert any("Retrying" in r.getMessage() for r in caplog.records)
    assert all(SIM_TOKEN not in r.getMessage() for r in caplog.records)


def test_malformed_bodies_are_retried_and_never_used(served: Served) -> None:
    """Cut-off JSON and bodies without their envelope key are refetched, never stored."""
    clean = served.client()
    run(_run_with(clean, _mirror))
    served.sim.update_faults(malformed_rate=0.2)
    client = served.client()
    mirror = run(_run_with(client, _mirror))
    assert mirror["per_product"] == _truth_counts(served)
    assert client.request_count > clean.request_count  # the extra ones are the retries


def test_a_revoked_token_fails_fast_with_auth_error(served: Served) -> None:
    """One request, no retries; later calls (the bug batches) fail without sending."""
    served.sim.update_faults(token_revoked=True)
    client = served.client()

    async def scenario(client: ApiClient) -> None:
        with pytest.raises(AuthError):
            await client.fetch_products()
        assert client.request_count == 1
        with pytest.raises(AuthError):
            await fetch_bugs_batched(client, list(range(1, 200)))

    run(_run_with(client, scenario))
    assert client.request_count == 1  # a refused token is not tried again
    assert _statuses(served) == {"401": 1}


def test_a_wrong_token_is_refused_with_auth_error(served: Served) -> None:
    """The simulator checks the token; the message names the variable, not the token."""
    client = ApiClient(served.base_url, "not-the-token", retry=RetryPolicy(max_attempts=3))

    async def scenario(client: ApiClient) -> ApiError:
        with pytest.raises(AuthError) as info:
            await client.fetch_products()
        return info.value

    error = run(_run_with(client, scenario))
    assert "not-the-token" not in str(error)
    assert client.request_count == 1


def test_hanging_responses_time_out_and_are_retried(served: Served) -> None:
    """A third of answers hang for a second; a 0.2 s client timeout retries past them."""
    served.sim.update_faults(hang_rate=0.3, hang_seconds=1.0)
    _pid, ordered = _largest_product(served)
    client = served.client(timeout_s=0.2)

    async def scenario(client: ApiClient) -> list[int]:
        return [(await client.fetch_test(tid))["id"] for tid in ordered[:12]]

    assert run(_run_with(client, scenario)) == ordered[:12]
    assert client.request_count > 12


def test_rate_limits_are_waited_out_with_http_date_retry_after(served: Served) -> None:
    """The simulator's token bucket answers 429 with an HTTP date; every request completes."""
    served.sim.update_faults(rate_limit_rps=15, retry_after_http_date=True)
    _pid, ordered = _largest_product(served)
    client = served.client(retry=RetryPolicy(base_delay_s=0.01, max_wait_s=3.0))

    async def scenario(client: ApiClient) -> list[dict[str, Any]]:
        return await asyncio.gather(*(client.fetch_test(t) for t in ordered[:25]))

    tests = run(_run_with(client, scenario))
    assert [t["id"] for t in tests] == ordered[:25]
    assert _statuses(served)["429"] > 0


def test_requests_in_flight_never_exceed_max_concurrent_over_the_wire(served: Served) -> None:
    """A transport wrapper counts requests between send and answer."""
    served.sim.update_faults(latency_ms=5)
    counter = _CountingTransport(httpx.AsyncHTTPTransport())
    client = served.client(max_concurrent=3, transport=counter)
    _pid, ordered = _largest_product(served)

    async def scenario(client: ApiClient) -> Any:
        return await asyncio.gather(*(client.fetch_test(t) for t in ordered[:30]))

    run(_run_with(client, scenario))
    assert counter.peak == 3
    assert counter.sent == client.request_count == 30


class _CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.sent += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _run_with(client: ApiClient, scenario: Callable[[ApiClient], Any]) -> Any:
    async with client:
        return await scenario(client)
