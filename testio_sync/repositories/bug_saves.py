"""Bug lists that wait for the store writer are saved together, in one transaction.

A forced sync saves some 500 bug batches. Each save is a transaction: on a
server its ``BEGIN`` and ``COMMIT`` are round trips, and a batch that waits for
the writer meanwhile gains nothing from waiting alone. While one save runs, the
lists that arrive queue up; the next save takes all of them (group commit). A
quiet writer still saves a lone batch at once, so nothing is held back to wait
for company. Each caller gets its own count. A failed grouped save stored nothing; its
lists are then saved one by one, so that a list the store refuses fails only its own
caller (a full disk fails them all at once: every later save would fail too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from testio_sync.store import save
from testio_sync.store.failures import DiskFullError

MAX_TESTS = 150  # tests per grouped save: a transaction stays short for other writers


@dataclass
class _Lists:
    test_ids: list[int]
    bugs_by_test: Mapping[int, list[dict[str, Any]]]
    now: datetime
    reject_reasons: Mapping[str, str] | None
    done: asyncio.Future[int]

    def stored(self, skipped: set[int]) -> int:
        """Bugs of this caller's stored tests, as one ``save_bugs`` call would count them."""
        ids = {
            bug["id"]
            for tid in dict.fromkeys(self.test_ids)
            if tid not in skipped
            for bug in self.bugs_by_test.get(tid) or []
        }
        return len(ids)


class GroupedBugSaves:
    """``save_bugs`` through ``write``, with lists that arrive during a save grouped."""

    def __init__(self, write: Callable[..., Awaitable[Any]]) -> None:
        self._write = write
        self._queue: list[_Lists] = []
        self._saving: asyncio.Task[None] | None = None

    async def save(
        self,
        test_ids: Sequence[int],
        bugs_by_test: Mapping[int, list[dict[str, Any]]],
        *,
        now: datetime,
        reject_reasons: Mapping[str, str] | None = None,
    ) -> int:
        """Store each test's complete bug list; the number of bugs stored for these tests.

        Raises:
            StoreError: the save that held these lists failed.
        """
        done = asyncio.get_running_loop().create_future()
        lists = _Lists(list(test_ids), bugs_by_test, now, reject_reasons, done)
        self._queue.append(lists)
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._drain())
        return await asyncio.shield(lists.done)  # a cancelled caller's lists are still saved

    async def _drain(self) -> None:
        while self._queue:
            group, size = [], 0
            while self._queue and (not group or size + len(self._queue[0].test_ids) <= MAX_TESTS):
                group.append(self._queue.pop(0))
                size += len(group[-1].test_ids)
            await self._save(group)

    async def _save(self, group: list[_Lists]) -> None:
        test_ids = list(dict.fromkeys(t for lists in group for t in lists.test_ids))
        bugs: dict[int, list[dict[str, Any]]] = {}
        for lists in group:
            bugs.update({t: lists.bugs_by_test.get(t) or [] for t in lists.test_ids})
        try:
            counts = await self._write(
                save.save_bugs,
                test_ids,
                bugs,
                now=max(lists.now for lists in group),
                reject_reasons=group[-1].reject_reasons,
            )
        except Exception as exc:
            if len(group) > 1 and not isinstance(exc, DiskFullError):
                for lists in group:  # the transaction rolled back: nothing of them is stored
                    await self._save([lists])
                return
            for lists in group:  # each caller gets the save's own error
                if not lists.done.done():
                    lists.done.set_exception(exc)
            return
        except BaseException:  # cancelled: nobody is left to save the queued lists
            for lists in [*group, *self._queue]:
                if not lists.done.done():
                    lists.done.cancel()
            self._queue.clear()
            raise
        skipped = set(counts.skipped_ids)
        for lists in group:
            if not lists.done.done():
                lists.done.set_result(lists.stored(skipped))
