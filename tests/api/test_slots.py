"""PrioritySlots: never more holders than slots; waiters served by priority, then arrival."""

from __future__ import annotations

import asyncio

from testio_sync.api.slots import PrioritySlots, RequestBudget, request_priority


def test_waiters_are_served_highest_priority_first_and_fifo_among_equals():
    async def scenario() -> list[str]:
        slots = PrioritySlots(1)
        order: list[str] = []
        await slots.acquire()  # hold the only slot while the others queue

        async def waiter(name: str, priority: int) -> None:
            request_priority.set(priority)
            async with slots.slot():
                order.append(name)

        tasks = [
            asyncio.create_task(waiter("bulk-1", 0)),
            asyncio.create_task(waiter("deep-walk", 12)),
            asyncio.create_task(waiter("bulk-2", 0)),
            asyncio.create_task(waiter("walk", 11)),
        ]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["deep-walk", "walk", "bulk-1", "bulk-2"]


def test_a_cancelled_waiter_does_not_leak_its_slot():
    async def scenario() -> int:
        slots = PrioritySlots(2)
        await slots.acquire()
        await slots.acquire()
        waiting = asyncio.create_task(slots.acquire(5))
        await asyncio.sleep(0)
        waiting.cancel()
        slots.release()
        await asyncio.gather(waiting, return_exceptions=True)
        slots.release()
        return slots.in_use

    assert asyncio.run(scenario()) == 0


def test_never_more_holders_than_slots():
    async def scenario() -> int:
        slots = PrioritySlots(3)
        peak = current = 0

        async def work(priority: int) -> None:
            nonlocal peak, current
            request_priority.set(priority)
            async with slots.slot():
                current += 1
                peak = max(peak, current)
                await asyncio.sleep(0.001)
                current -= 1

        await asyncio.gather(*(work(i % 4) for i in range(40)))
        return peak

    assert asyncio.run(scenario()) == 3


def test_clients_of_one_process_share_one_request_budget_and_one_rate_limit_pause():
    """Two clients at once never exceed the bound together; a pause set by one holds both."""
    from .support import envelope, mock_client

    state = {"now": 0, "peak": 0}

    async def handler(request):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.005)
        state["now"] -= 1
        return envelope("products", [])

    async def scenario() -> tuple[bool, float]:
        one, two = mock_client(handler, max_concurrent=3), mock_client(handler, max_concurrent=3)
        await asyncio.gather(*(c.fetch_products() for c in (one, two) for _ in range(10)))
        shared = one._shared() is two._shared()
        loop = asyncio.get_running_loop()
        one._shared().pause(0.1)  # what a 429 seen by ``one`` does
        started = loop.time()
        await two.fetch_products()
        waited = loop.time() - started
        await one.aclose()
        await two.aclose()
        return shared, waited

    shared, waited = asyncio.run(scenario())
    assert shared
    assert state["peak"] <= 3
    assert waited >= 0.09


def test_spare_slots_are_the_idle_ones_and_none_during_a_pause():
    """Speculation may take only slots nobody holds or waits for, and none while paused."""

    async def scenario() -> tuple[int, int, int, int]:
        budget = RequestBudget(3)
        slots = budget.slots
        await slots.acquire()
        free = budget.spare()
        await slots.acquire()
        await slots.acquire()
        waiting = asyncio.create_task(slots.acquire())  # all held: it queues
        await asyncio.sleep(0)
        slots.release()  # the slot goes straight to the waiter
        queued_then_granted = budget.spare()
        await waiting
        slots.release()
        idle = budget.spare()
        budget.pause(60)
        paused = budget.spare()
        return free, queued_then_granted, idle, paused

    assert asyncio.run(scenario()) == (2, 0, 1, 0)
