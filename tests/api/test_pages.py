"""The test page walker against an in-memory test list: end detection, 500 shrink, guards."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from testio_sync.api import (
    PageLoopError,
    TestPage,
    TestPageWalker,
    UnreadablePagesError,
    iter_test_pages,
)
from testio_sync.api.pages import READ_AHEAD_GROWTH, READ_AHEAD_START
from testio_sync.api.slots import shared_budget
from testio_sync.errors import AccessError

from .support import FAST, envelope, mock_client, path_of, run

PRODUCT = 7
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeTestList:
    """One product's tests, newest end first; a page holding a broken test answers 500."""

    def __init__(self, count: int, broken: tuple[int, ...] = ()) -> None:
        self.tests = [
            {
                "id": 5000 + 3 * n,
                "end_at": (EPOCH - timedelta(hours=n)).isoformat(),
                "test_environment": {"id": 1, "title": "Env", "password": "pw"},
            }
            for n in range(count)
        ]
        self.broken_ids = {self.tests[p]["id"] for p in broken}
        self.asked: list[tuple[int, int]] = []

    def id_at(self, position: int) -> int:
        return int(self.tests[position]["id"])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert path_of(request) == f"products/{PRODUCT}/exploratory_tests"
        page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
        self.asked.append((page, per_page))
        chunk = self.tests[(page - 1) * per_page : page * per_page]
        if any(t["id"] in self.broken_ids for t in chunk):
            return httpx.Response(500, json={"error": "Internal Server Error"})
        return envelope("exploratory_tests", [dict(t) for t in chunk])


def _walk(handler: Any, **kw: Any) -> list[TestPage]:
    async def scenario() -> list[TestPage]:
        async with mock_client(handler) as client:
            return [page async for page in iter_test_pages(client, PRODUCT, **kw)]

    return run(scenario())


def _ids(pages: list[TestPage]) -> list[int]:
    return [t["id"] for page in pages for t in page.tests]


def test_the_walk_goes_to_the_first_short_page_and_stops_there() -> None:
    """60 tests in pages of 25: three pages, only the short last one is last."""
    fake = FakeTestList(60)
    pages = _walk(fake)
    assert [(p.page, p.start_position, len(p.tests), p.is_last) for p in pages] == [
        (1, 0, 25, False),
        (2, 25, 25, False),
        (3, 50, 10, True),
    ]
    assert _ids(pages) == [t["id"] for t in fake.tests]
    assert fake.asked == [(1, 25), (2, 25), (3, 25)]


def test_a_list_that_fills_its_last_page_ends_on_an_empty_page() -> None:
    """There is no total: a full page is never the end, the empty one after it is."""
    pages = _walk(FakeTestList(50))
    assert [(len(p.tests), p.is_last) for p in pages] == [(25, False), (25, False), (0, True)]


def test_page_items_have_their_credentials_stripped() -> None:
    """The walker goes through the client, which strips environments."""
    pages = _walk(FakeTestList(3))
    assert all(t["test_environment"] == {"id": 1, "title": "Env"} for t in pages[0].tests)


def test_a_broken_test_costs_only_itself_and_is_recorded_with_its_neighbours() -> None:
    """Page 1 answers 500; smaller pages recover its other 24 tests and the walk goes on."""
    fake = FakeTestList(60, broken=(7,))
    pages = _walk(fake)
    first = pages[0]
    assert first.recovered and not first.is_last
    assert len(first.tests) == 24 and first.slots == 25
    (slot,) = first.broken
    assert (slot.product_id, slot.position) == (PRODUCT, 7)
    assert (slot.prev_test_id, slot.next_test_id) == (fake.id_at(6), fake.id_at(8))
    assert (slot.prev_end_at, slot.next_end_at) == (
        fake.tests[6]["end_at"],
        fake.tests[8]["end_at"],
    )
    expected = [t["id"] for t in fake.tests if t["id"] != fake.id_at(7)]
    assert _ids(pages) == expected
    assert [p.is_last for p in pages] == [False, False, True]
    assert (1, 10) in fake.asked and (8, 1) in fake.asked


def test_a_page_short_because_of_recovery_is_not_the_end() -> None:
    """Two broken tests on one page: 23 tests load, 25 slots count, page 2 is still walked."""
    fake = FakeTestList(40, broken=(3, 4))
    pages = _walk(fake)
    assert [(len(p.tests), p.slots, p.is_last) for p in pages] == [(23, 25, False), (15, 15, True)]
    assert [s.position for s in pages[0].broken] == [3, 4]
    assert [(s.prev_test_id, s.next_test_id) for s in pages[0].broken] == [
        (fake.id_at(2), fake.id_at(5)),
        (fake.id_at(2), fake.id_at(5)),
    ]


def test_neighbours_on_adjacent_pages_are_filled_in() -> None:
    """A broken first slot takes the previous page's last test; a last slot fetches one more."""
    fake = FakeTestList(80, broken=(25, 49))
    pages = _walk(fake)
    first_slot, last_slot = pages[1].broken
    assert (first_slot.position, first_slot.prev_test_id) == (25, fake.id_at(24))
    assert first_slot.next_test_id == fake.id_at(26)
    assert (last_slot.position, last_slot.next_test_id) == (49, fake.id_at(50))
    assert last_slot.prev_test_id == fake.id_at(48)
    assert len(_ids(pages)) == 78


def test_a_walk_from_a_later_page_fetches_the_unknown_previous_neighbour() -> None:
    """Starting at page 2, a broken first slot's predecessor is fetched alone."""
    fake = FakeTestList(60, broken=(25,))
    pages = _walk(fake, start_page=2)
    assert pages[0].start_position == 25
    assert pages[0].broken[0].prev_test_id == fake.id_at(24)
    assert (25, 1) in fake.asked  # position 24 as a one-item page


def test_a_broken_test_on_the_last_page_ends_the_walk_correctly() -> None:
    """30 tests, position 27 broken: page 2 recovers 4 tests + 1 slot and is the end."""
    fake = FakeTestList(30, broken=(27,))
    pages = _walk(fake)
    assert [(len(p.tests), p.slots, p.is_last) for p in pages] == [(25, 25, False), (4, 5, True)]
    slot = pages[1].broken[0]
    assert (slot.prev_test_id, slot.next_test_id) == (fake.id_at(26), fake.id_at(28))


def test_a_broken_last_test_of_the_list_has_no_next_neighbour() -> None:
    """Nothing follows the list's final slot, and nothing is fetched to look for it."""
    fake = FakeTestList(30, broken=(29,))
    pages = _walk(fake)
    slot = pages[1].broken[0]
    assert (slot.position, slot.prev_test_id, slot.next_test_id) == (29, fake.id_at(28), None)
    assert pages[1].is_last


def test_a_page_that_repeats_the_previous_one_stops_with_an_error() -> None:
    """A server that ignores ``page`` would otherwise be walked forever."""
    fake = FakeTestList(25)

    def handler(request: httpx.Request) -> httpx.Response:
        return envelope("exploratory_tests", [dict(t) for t in fake.tests])

    with pytest.raises(PageLoopError):
        _walk(handler)


def test_an_end_at_order_violation_is_warned_about_not_fatal() -> None:
    """The declared order is checked within and across pages; the walk still finishes."""
    fake = FakeTestList(30)
    fake.tests[3]["end_at"] = (EPOCH + timedelta(days=1)).isoformat()
    fake.tests[25]["end_at"] = (EPOCH + timedelta(days=2)).isoformat()

    async def scenario() -> tuple[list[TestPage], TestPageWalker]:
        async with mock_client(fake) as client:
            walker = TestPageWalker(client, PRODUCT)
            return [page async for page in walker.pages()], walker

    pages, walker = run(scenario())
    assert len(_ids(pages)) == 30
    assert len(pages[0].warnings) == 1 and str(fake.id_at(3)) in pages[0].warnings[0]
    assert len(pages[1].warnings) == 1 and str(fake.id_at(25)) in pages[1].warnings[0]
    assert walker.warnings == pages[0].warnings + pages[1].warnings
    assert walker.stop_reason == "short_page"


def test_leaving_the_walk_early_sends_no_further_request() -> None:
    """An incremental walk breaks after a page; the generator closes cleanly."""
    fake = FakeTestList(100)

    async def scenario() -> list[int]:
        async with mock_client(fake) as client:
            pages = iter_test_pages(client, PRODUCT)
            seen = []
            async for page in pages:
                seen.append(page.page)
                if page.page == 2:
                    break
            await pages.aclose()
            return seen

    assert run(scenario()) == [1, 2]
    assert fake.asked == [(1, 25), (2, 25)]


def test_errors_other_than_500_end_the_walk() -> None:
    """Only a page's 500 is shrunk; a 404 for the product reaches the caller."""
    with pytest.raises(AccessError):
        _walk(lambda request: httpx.Response(404))


def test_bad_arguments_are_refused() -> None:
    """Page numbers and sizes start at 1."""
    client = mock_client(FakeTestList(1))
    with pytest.raises(ValueError):
        TestPageWalker(client, PRODUCT, per_page=0)
    with pytest.raises(ValueError):
        TestPageWalker(client, PRODUCT, start_page=0)
    run(client.aclose())


def test_pages_fetched_directly_keep_the_loop_guard_and_neighbours() -> None:
    """``fetch_page`` alone (as an engine may call it) still catches a repeat."""
    fake = FakeTestList(25)

    def handler(request: httpx.Request) -> httpx.Response:
        return envelope("exploratory_tests", [dict(t) for t in fake.tests])

    async def scenario() -> None:
        async with mock_client(handler) as client:
            walker = TestPageWalker(client, PRODUCT)
            await walker.fetch_page(1)
            with pytest.raises(PageLoopError):
                await walker.fetch_page(2)

    run(scenario())


def test_a_page_fetched_out_of_order_borrows_nothing_from_an_unrelated_page() -> None:
    """After page 1, page 3's broken first slot gets its true predecessor, fetched alone."""
    fake = FakeTestList(80, broken=(50,))

    async def scenario() -> TestPage:
        async with mock_client(fake) as client:
            walker = TestPageWalker(client, PRODUCT)
            await walker.fetch_page(1)
            return await walker.fetch_page(3)

    page = run(scenario())
    assert page.broken[0].prev_test_id == fake.id_at(49)
    assert page.warnings == []


# -- read-ahead ----------------------------------------------------------------------


class Overlap:
    """Wraps a fake list: answers after a short wait, counting requests in flight."""

    def __init__(self, fake: FakeTestList, *, throttle_page: int | None = None) -> None:
        self.fake = fake
        self.in_flight = 0
        self.most = 0
        self.throttle_page = throttle_page  # this page answers 429 the first time
        self.arrivals: list[tuple[float, int]] = []
        self.throttled_at: float | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        now = asyncio.get_running_loop().time()
        page = int(request.url.params["page"])
        self.arrivals.append((now, page))
        if page == self.throttle_page and self.throttled_at is None:
            self.throttled_at = now
            return httpx.Response(429, headers={"Retry-After": "3600"})
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return self.fake(request)
        finally:
            self.in_flight -= 1


def _deep_walk(
    handler: Any, *, known_pages: int = 0, speculate: bool = True, **kw: Any
) -> tuple[list[TestPage], list[int]]:
    """Walk as a deep sync does: top the read-ahead up before every page."""

    async def scenario() -> tuple[list[TestPage], list[int]]:
        async with mock_client(handler, **kw) as client:
            walker = TestPageWalker(client, PRODUCT)
            pages: list[TestPage] = []
            try:
                while not pages or not pages[-1].is_last:
                    number = len(pages) + 1
                    walker.read_ahead(number, known_pages=known_pages, speculate=speculate)
                    pages.append(await walker.fetch_page(number))
            finally:
                walker.close()
            await asyncio.sleep(0.05)  # let anything cancelled settle before counting
            return pages, walker.pages_ahead

    return run(scenario())


def test_a_deep_walk_keeps_pages_in_flight_and_hands_them_over_in_order() -> None:
    fake = FakeTestList(290)  # 11 full pages and a short 12th
    overlap = Overlap(fake)

    pages, left = _deep_walk(overlap)

    assert _ids(pages) == [t["id"] for t in fake.tests]
    assert [p.page for p in pages] == list(range(1, 13))
    assert overlap.most > 1  # pages overlapped
    asked = [page for page, _ in fake.asked]
    assert len(asked) == len(set(asked))  # no page asked twice
    past_end = [page for page in asked if page > 12]
    assert len(past_end) <= READ_AHEAD_START + 12 // READ_AHEAD_GROWTH
    assert left == []


def test_known_pages_start_at_once_and_nothing_is_guessed_past_them() -> None:
    fake = FakeTestList(110)  # pages 1-4 full, page 5 short

    pages, _ = _deep_walk(Overlap(fake), known_pages=5, speculate=False)

    assert len(pages) == 5 and pages[-1].is_last
    assert sorted(fake.asked) == [(n, 25) for n in range(1, 6)]


def test_a_short_page_drops_the_pages_read_ahead_past_it() -> None:
    """One request slot: the pages queued past the short page are never sent."""
    fake = FakeTestList(30)  # page 2 is short

    pages, left = _deep_walk(Overlap(fake), known_pages=8, speculate=False, max_concurrent=1)

    assert [p.page for p in pages] == [1, 2]
    # At most the page that took the slot as page 2 came back; never the rest.
    assert {page for page, _ in fake.asked} <= {1, 2, 3}
    assert left == []


def test_a_429_pauses_the_pages_read_ahead_too() -> None:
    """After a 429 no page read ahead is sent before the pause ends.

    One slot, so that no request is on the wire when the 429 comes back: every
    page queued ahead must wait at the gate.
    """
    fake = FakeTestList(200)
    overlap = Overlap(fake, throttle_page=3)
    wait = FAST.max_wait_s

    pages, _ = _deep_walk(overlap, known_pages=9, speculate=False, max_concurrent=1)

    assert _ids(pages) == [t["id"] for t in fake.tests]
    assert overlap.throttled_at is not None
    during = [
        page
        for at, page in overlap.arrivals
        if overlap.throttled_at < at < overlap.throttled_at + wait
    ]
    assert during == []
    assert sorted({page for _, page in overlap.arrivals}) == list(range(1, 10))


def test_no_read_ahead_starts_while_a_429_pause_holds() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        async with mock_client(FakeTestList(100)) as client:
            walker = TestPageWalker(client, PRODUCT)
            budget = shared_budget(client.max_concurrent)
            budget.pause(60)
            walker.read_ahead(1, known_pages=3)
            paused = walker.pages_ahead
            budget.resume_at = 0.0
            walker.read_ahead(1, known_pages=3)
            started = walker.pages_ahead
            walker.close()
            return paused, started

    paused, started = run(scenario())
    assert paused == []
    assert started[:3] == [1, 2, 3]


# -- a list that cannot be read ---------------------------------------------------------


def test_a_list_failing_at_every_size_stops_after_a_page_of_unreadable_positions() -> None:
    """Every page answers 500, past the end too: the walk stops instead of going on forever."""
    asked: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append((int(request.url.params["page"]), int(request.url.params["per_page"])))
        return httpx.Response(500, json={"error": "Internal Server Error"})

    with pytest.raises(UnreadablePagesError, match="25 tests in a row of product 7"):
        _walk(handler)
    # Single tests were tried only within the first page (and its next neighbour).
    assert max(page for page, size in asked if size == 1) <= 26


def test_unreadable_positions_in_a_row_are_counted_across_pages() -> None:
    with pytest.raises(UnreadablePagesError):
        _walk(FakeTestList(60, broken=tuple(range(10, 35))))


def test_fewer_unreadable_positions_in_a_row_than_a_page_are_broken_tests() -> None:
    fake = FakeTestList(60, broken=tuple(range(1, 25)))

    pages = _walk(fake)

    assert [slot.position for page in pages for slot in page.broken] == list(range(1, 25))
    assert len(_ids(pages)) == 36
