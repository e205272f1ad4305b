"""Fetching the bugs of many tests in batches that split when the API times out.

The bugs endpoint is not paginated: it returns every bug of the named tests in
one answer, and an answer that is too large dies at the edge with HTTP 524. So
test ids go out in batches of about 15, concurrently (the client's semaphore
bounds them), and a batch that gets a 524 is split in halves until a single
test either succeeds or is recorded as failed. One bad test never costs the
bugs of the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from testio_sync.errors import ApiError, AuthError

if TYPE_CHECKING:
    from testio_sync.api.client import ApiClient

__all__ = ["BugBatchResult", "fetch_bugs_batched"]

logger = logging.getLogger(__name__)

# A 524 says the answer was too large; a 500 can be one broken test in the batch.
# Both get smaller when the batch does. Other failures (a 503 past its retries, a
# broken body) would only multiply requests if split, so they fail the batch.
_SPLIT_STATUSES = frozenset({500, 524})


@dataclass
class BugBatchResult:
    """Bugs grouped by test id (every asked id present) and the ids that failed, with why."""

    bugs_by_test: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)


async def fetch_bugs_batched(
    client: ApiClient, test_ids: Sequence[int], *, batch_size: int = 15
) -> BugBatchResult:
    """Fetch the bugs of ``test_ids`` in concurrent batches, splitting a batch on a 524.

    Tests that still fail alone (or whose batch failed otherwise) land in
    ``failed``; their entry in ``bugs_by_test`` stays empty and must not be read
    as "no bugs".

    Raises:
        AuthError: the token was refused; every other batch is cancelled.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    ids = list(dict.fromkeys(int(i) for i in test_ids))
    result = BugBatchResult(bugs_by_test={i: [] for i in ids})
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    await _run_all([_fetch_batch(client, batch, result) for batch in batches])
    return result


async def _fetch_batch(client: ApiClient, ids: list[int], result: BugBatchResult) -> None:
    try:
        bugs = await client.fetch_bugs(ids)
    except AuthError:
        raise
    except ApiError as exc:
        if exc.status in _SPLIT_STATUSES and len(ids) > 1:
            half = len(ids) // 2
            logger.info("Bug batch of %d tests failed (HTTP %s); splitting", len(ids), exc.status)
            await _run_all(
                [_fetch_batch(client, ids[:half], result), _fetch_batch(client, ids[half:], result)]
            )
            return
        for test_id in ids:
            result.failed[test_id] = str(exc)
        logger.warning("Bugs of tests %s not fetched: %s", ids, exc)
        return
    asked = set(ids)
    for bug in bugs:
        test = bug.get("test")
        test_id = test.get("id") if isinstance(test, dict) else None
        if test_id in asked:
            result.bugs_by_test[test_id].append(bug)
        else:
            # A bug we did not ask for has no test row to hang from; keeping it would
            # store an orphan, so it is left to the sync of its own test.
            logger.warning("Bug %s names test %s, which was not asked for", bug.get("id"), test_id)


async def _run_all(coros: list[Any]) -> None:
    """Run coroutines concurrently; on the first error cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
