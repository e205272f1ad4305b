"""The test page walker against an in-memory test list: end detection, 500 shrink, guards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from testio_sync.api import PageLoopError, TestPage, TestPageWalker, iter_test_pages
from testio_sync.errors import AccessError

from .support import envelope, mock_client, path_of, run

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
