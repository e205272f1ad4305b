"""Per-entity asyncio locks for read-through refreshes inside one process.

Concurrent requests for the same entity (two MCP tool calls wanting one test's
bugs) share one fetch: the second waits on the first's lock, then finds the
entity fresh. The rule that keeps this deadlock-free across layers: never take
the cross-process ``SyncLock`` while holding one of these (it checks).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

_HELD_ENTITY_KEYS: contextvars.ContextVar[tuple[tuple[int, Hashable], ...]] = (
    contextvars.ContextVar("testio_sync_held_entity_keys", default=())
)


def held_entity_keys() -> tuple[tuple[int, Hashable], ...]:
    """The entity locks the current task holds (``SyncLock`` refuses when non-empty)."""
    return _HELD_ENTITY_KEYS.get()


class EntityLocks:
    """Per-entity ``asyncio.Lock`` registry for read-through refreshes in one process.

    ``get(key)`` returns the same lock for the same key while anyone holds or waits on
    it; entries are weak, so keys nobody uses disappear and the registry does not grow
    with every id ever refreshed. Never acquire ``SyncLock`` inside ``hold()``.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def __len__(self) -> int:
        return len(self._locks)

    def get(self, key: Hashable) -> asyncio.Lock:
        """The lock for ``key``, created on first use."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[asyncio.Lock]:
        """Hold the lock for ``key``; marks the task so ``SyncLock.acquire`` refuses.

        Raises:
            RuntimeError: the task already holds ``key`` (asyncio locks do not nest).
        """
        held = _HELD_ENTITY_KEYS.get()
        if (id(self), key) in held:
            raise RuntimeError(f"This task already holds the entity lock {key!r}")
        lock = self.get(key)
        async with lock:
            token = _HELD_ENTITY_KEYS.set((*held, (id(self), key)))
            try:
                yield lock
            finally:
                _HELD_ENTITY_KEYS.reset(token)
