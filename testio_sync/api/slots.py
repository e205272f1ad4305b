"""The client's request slots, handed out highest priority first.

A sync's wall time is bounded by its request budget (requests x latency over
the slots) when every slot stays busy, and by its biggest product's walk when
it does not. With many products walking at once, a plain FIFO semaphore makes
that walk queue behind every other request. Callers set ``request_priority`` in
their task (a contextvar, so it follows the task and needs no parameter): the
deeper a walk, the higher its priority; bulk work keeps the default 0. Equal
priorities are FIFO. Read-ahead asks ``RequestBudget.spare`` how many slots
it may take: those nobody wants, or, when it outranks everyone queued, as many
as its window allows (it would be served first anyway).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

request_priority: contextvars.ContextVar[int] = contextvars.ContextVar(
    "testio_sync_request_priority", default=0
)


class PrioritySlots:
    """A counting semaphore whose waiters are served by priority, then arrival."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    @property
    def idle(self) -> int:
        """Slots free with nobody queued for them."""
        return 0 if self._waiters else self._free

    def first_in_line(self, priority: int) -> bool:
        """Whether a request of ``priority`` would be served before everyone queued now."""
        return not self._waiters or -self._waiters[0][0] < priority

    async def acquire(self, priority: int | None = None) -> None:
        if priority is None:
            priority = request_priority.get()
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot moves straight to the waiter
                return
        self._free += 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class RequestBudget:
    """What all clients of one process (one event loop) share: slots and the 429 pause.

    TestIO limits per IP, so a 429 seen by one client must pause every client,
    and the in-flight bound holds for the process, not for each client.
    """

    def __init__(self, size: int) -> None:
        self.slots = PrioritySlots(size)
        self.resume_at = 0.0  # loop time before which no request may start

    def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self.resume_at = max(self.resume_at, loop.time() + seconds)

    @property
    def paused(self) -> bool:
        """A 429 closed the gate and it has not reopened yet."""
        return self.resume_at > asyncio.get_running_loop().time()

    def spare(self, priority: int | None = None) -> int:
        """Slots a speculative request may take now; none while paused.

        Idle ones; and, for a request of ``priority`` above everyone queued (the
        longest chain of a sync), every slot: it would be served first anyway, and
        its caller bounds how many it asks for.
        During a 429 pause requests wait at the gate, not for a slot, so slots look
        idle; speculating then would only pile more requests behind the gate.
        """
        if self.paused:
            return 0
        if priority is not None and self.slots.first_in_line(priority):
            return self.slots.size
        return self.slots.idle

    async def wait_for_gate(self) -> None:
        loop = asyncio.get_running_loop()
        while (delay := self.resume_at - loop.time()) > 0:
            await asyncio.sleep(delay)


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RequestBudget] = (
    weakref.WeakKeyDictionary()
)


def shared_budget(size: int) -> RequestBudget:
    """The budget of the running event loop, created with ``size`` slots on first use."""
    loop = asyncio.get_running_loop()
    budget = _budgets.get(loop)
    if budget is None:
        budget = _budgets[loop] = RequestBudget(size)
    return budget
