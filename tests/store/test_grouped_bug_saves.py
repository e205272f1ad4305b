"""Bug lists that arrive while a save runs are saved together: same rows, own counts."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from testio_sync.errors import StoreError
from testio_sync.repositories.bug_saves import GroupedBugSaves
from testio_sync.store import queries, save
from testio_sync.store.failures import DiskFullError
from testio_sync.store.models import Bug

from . import payloads as api

TESTS = [101, 102, 103, 104]


@pytest.fixture
def stored(db, now: datetime) -> None:
    save.save_products([api.product(1)], now=now)
    save.save_tests(1, [api.exploratory_test(t) for t in TESTS], now=now)


class GatedWrite:
    """A writer whose first save waits for the test's go: later lists queue behind it."""

    def __init__(
        self, fail: bool = False, refused: int | None = None, full_disk: bool = False
    ) -> None:
        self.calls: list[list[int]] = []
        self.go = asyncio.Event()
        self.fail = fail
        self.full_disk = full_disk
        self.refused = refused  # a test whose list the store refuses, alone or grouped

    async def __call__(self, fn: Any, test_ids: list[int], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(list(test_ids))
        if len(self.calls) == 1:
            await self.go.wait()
        elif self.fail:
            if self.full_disk:
                raise DiskFullError("Cannot save bugs: the disk is full")
            raise StoreError("Cannot save bugs: the store is read-only")
        elif self.refused in test_ids:
            raise StoreError(f"Cannot save bugs of test {self.refused}")
        return fn(test_ids, *args, **kwargs)


def test_lists_waiting_for_a_save_are_saved_in_one_call_each_with_its_own_count(
    stored, now: datetime
) -> None:
    lists = {
        101: [api.bug(1, test_id=101), api.bug(2, test_id=101)],
        102: [api.bug(3, test_id=102)],
        103: [],
        104: [api.bug(4, test_id=104), api.bug(5, test_id=104), api.bug(6, test_id=104)],
    }

    async def run() -> tuple[list[int], list[list[int]]]:
        write = GatedWrite()
        saves = GroupedBugSaves(write)
        first = asyncio.create_task(saves.save([101], {101: lists[101]}, now=now))
        await asyncio.sleep(0)  # the first save is at the writer, waiting
        later = [
            asyncio.create_task(saves.save([t, 999], {t: lists[t]}, now=now))  # 999: not stored
            for t in (102, 103, 104)
        ]
        await asyncio.sleep(0)
        write.go.set()
        counts = await asyncio.gather(first, *later)
        return counts, write.calls

    counts, calls = asyncio.run(run())
    assert calls == [[101], [102, 999, 103, 104]]  # one transaction for the three waiting
    assert counts == [2, 1, 0, 3]
    assert sorted(b.id for b in Bug.select()) == [1, 2, 3, 4, 5, 6]
    assert all(queries.get_test(t).bugs_synced_at == now for t in TESTS)


def waiting_lists(write: GatedWrite, now: datetime) -> list[Any]:
    """Test 101's list at the writer, then 102's and 103's queued behind it (one group)."""

    async def run() -> list[Any]:
        saves = GroupedBugSaves(write)
        first = asyncio.create_task(saves.save([101], {101: [api.bug(1, test_id=101)]}, now=now))
        await asyncio.sleep(0)
        later = [
            asyncio.create_task(saves.save([t], {t: [api.bug(t, test_id=t)]}, now=now))
            for t in (102, 103)
        ]
        await asyncio.sleep(0)
        write.go.set()
        return await asyncio.gather(first, *later, return_exceptions=True)

    return asyncio.run(run())


def test_a_list_the_store_refuses_fails_only_its_own_caller(stored, now: datetime) -> None:
    write = GatedWrite(refused=103)
    first, second, third = waiting_lists(write, now)
    assert write.calls == [[101], [102, 103], [102], [103]]  # the group, then one by one
    assert (first, second) == (1, 1)
    assert isinstance(third, StoreError)
    assert sorted(b.id for b in Bug.select()) == [1, 102]
    assert queries.get_test(102).bugs_synced_at == now
    assert queries.get_test(103).bugs_synced_at is None


def test_a_save_that_keeps_failing_fails_every_caller_it_held(stored, now: datetime) -> None:
    write = GatedWrite(fail=True)
    first, *later = waiting_lists(write, now)
    assert first == 1
    assert [type(e) for e in later] == [StoreError, StoreError]
    assert write.calls == [[101], [102, 103], [102], [103]]
    assert [b.id for b in Bug.select()] == [1]
    assert queries.get_test(102).bugs_synced_at is None


def test_a_full_disk_fails_the_group_at_once(stored, now: datetime) -> None:
    write = GatedWrite(fail=True, full_disk=True)
    first, *later = waiting_lists(write, now)
    assert first == 1
    assert [type(e) for e in later] == [DiskFullError, DiskFullError]
    assert write.calls == [[101], [102, 103]]  # no list tried again alone
