"""Bug batches against an in-memory bug list: grouping, 524 splitting, failures, auth."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from testio_sync.api import BugBatchResult, fetch_bugs_batched
from testio_sync.errors import AuthError

from .support import envelope, mock_client, run


class FakeBugs:
    """Three bugs per test; a batch above ``limit`` ids answers 524, a ``poisoned`` id always."""

    def __init__(self, limit: int = 100, poisoned: tuple[int, ...] = (), status: int = 524) -> None:
        self.limit = limit
        self.poisoned = set(poisoned)
        self.status = status
        self.batches: list[list[int]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # a real server answers later, so other tasks run meanwhile
        ids = [int(i) for i in request.url.params["filter_test_cycle_ids"].split(",")]
        self.batches.append(ids)
        if len(ids) > self.limit or self.poisoned & set(ids):
            return httpx.Response(self.status)
        bugs = [
            {"id": t * 10 + k, "test": {"id": t, "title": f"T{t}"}} for t in ids for k in range(3)
        ]
        return envelope("bugs", bugs)


def _fetch(handler: Any, ids: list[int], max_concurrent: int = 10, **kw: Any) -> BugBatchResult:
    async def scenario() -> BugBatchResult:
        async with mock_client(handler, max_concurrent=max_concurrent) as client:
            return await fetch_bugs_batched(client, ids, **kw)

    return run(scenario())


def test_bugs_are_grouped_by_their_test_in_batches_of_fifteen() -> None:
    """40 ids go out as 15 + 15 + 10; each bug lands under its own test."""
    fake = FakeBugs()
    ids = list(range(1, 41))
    result = _fetch(fake, ids)
    assert sorted(len(b) for b in fake.batches) == [10, 15, 15]
    assert sorted(result.bugs_by_test) == ids
    assert all([b["test"]["id"] for b in result.bugs_by_test[t]] == [t] * 3 for t in ids)
    assert result.failed == {}
    assert sum(map(len, result.bugs_by_test.values())) == 120


def test_every_asked_test_is_present_even_without_bugs() -> None:
    """A test with no bugs maps to an empty list, not a missing key."""

    def handler(request: httpx.Request) -> httpx.Response:
        return envelope("bugs", [{"id": 1, "test": {"id": 2}}, {"id": 9, "test": {"id": 99}}])

    result = _fetch(handler, [2, 3])
    assert result.bugs_by_test == {2: [{"id": 1, "test": {"id": 2}}], 3: []}


def test_a_524_splits_the_batch_until_the_halves_fit() -> None:
    """With a server limit of 4 ids, a 15-id batch is halved until every part succeeds."""
    fake = FakeBugs(limit=4)
    ids = list(range(100, 115))
    result = _fetch(fake, ids)
    assert result.failed == {}
    assert sum(len(b) for b in result.bugs_by_test.values()) == 45
    assert max(len(b) for b in fake.batches if len(b) <= 4) <= 4
    assert sorted(i for b in fake.batches if len(b) <= 4 for i in b) == ids


def test_a_test_that_fails_alone_is_reported_and_costs_no_other_bugs() -> None:
    """A single id that still gets 524 goes to ``failed`` with a message; the rest load."""
    fake = FakeBugs(poisoned=(7,))
    result = _fetch(fake, list(range(1, 16)))
    assert list(result.failed) == [7]
    assert "524" in result.failed[7]
    assert result.bugs_by_test[7] == []
    assert all(len(result.bugs_by_test[t]) == 3 for t in range(1, 16) if t != 7)


def test_a_repeated_500_in_a_batch_is_isolated_by_splitting_too() -> None:
    """A broken test makes its batch answer 500; halving finds it."""
    fake = FakeBugs(poisoned=(3,), status=500)
    result = _fetch(fake, [1, 2, 3, 4])
    assert list(result.failed) == [3]
    assert sum(map(len, result.bugs_by_test.values())) == 9


def test_other_failures_fail_the_batch_without_splitting() -> None:
    """A 503 past its retries would only multiply requests if split."""
    fake = FakeBugs(poisoned=(1,), status=503)
    result = _fetch(fake, [1, 2, 3])
    assert sorted(result.failed) == [1, 2, 3]
    assert {len(b) for b in fake.batches} == {3}


def test_a_refused_token_stops_every_batch_at_once() -> None:
    """AuthError is not a per-test failure: it propagates and the other batches are cancelled."""
    fake = FakeBugs(poisoned=tuple(range(1, 100)), status=401)
    with pytest.raises(AuthError):
        _fetch(fake, list(range(1, 100)), batch_size=5, max_concurrent=1)
    assert len(fake.batches) <= 2  # the first, and at most the one that took its slot


def test_duplicate_ids_are_asked_once() -> None:
    """The same test named twice is fetched once."""
    fake = FakeBugs()
    result = _fetch(fake, [5, 5, 6])
    assert fake.batches == [[5, 6]]
    assert sorted(result.bugs_by_test) == [5, 6]
