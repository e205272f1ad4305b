"""Split the request budget between page walks (latency-critical) and bulk work.

A product's pages must be read one after another, so the walks are the chain
that bounds a sync's wall time. Bulk work (bug batches) fills the request
slots but leaves ``MAX_RESERVED`` free while walks run: bulk waits while
``bulk in flight >= total - min(active walks, MAX_RESERVED)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MAX_RESERVED = 1


class BudgetGate:
    """Admission control for bulk requests; walks reserve one slot each."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.reserved = 0
        self.bulk = 0
        self._changed = asyncio.Condition()

    def _bulk_room(self) -> bool:
        # Walks already jump the client's queue (priority slots); a couple of free
        # slots spares them the wait for a bulk request to finish.
        return self.bulk < max(1, self.total - min(self.reserved, MAX_RESERVED))

    @asynccontextmanager
    async def walk(self) -> AsyncIterator[None]:
        """Hold one slot for a sequential walk while it runs."""
        async with self._changed:
            self.reserved += 1
        try:
            yield
        finally:
            async with self._changed:
                self.reserved -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def bulk_slot(self) -> AsyncIterator[None]:
        """Wait for room, then hold one bulk slot."""
        async with self._changed:
            await self._changed.wait_for(self._bulk_room)
            self.bulk += 1
        try:
            yield
        finally:
            async with self._changed:
                self.bulk -= 1
                self._changed.notify_all()
