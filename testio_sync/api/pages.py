"""Walking a product's exploratory tests page by page, surviving broken tests.

The test list is the API's only paginated one: ``end_at`` descending, no total,
no next link; it ends at a page with fewer than ``per_page`` items. One broken
test makes its whole page answer HTTP 500 every time, so on a 500 the walker
refetches the same range with smaller pages (10, 5, 2, 1) and records the one
test that fails even alone as a ``BrokenSlot``. A page that is short *because*
of such a recovery is not the end of the list: the end is judged on slots
(tests plus broken ones), never on the number of tests. A run of unreadable
positions as long as a page is not a broken test but a broken list: the walk
stops there with ``UnreadablePagesError`` rather than record positions forever.

A walk expected to go deep may start with one request for the newest
``UNPAGED_LIMIT`` tests (``fetch_newest``: the list asked for without ``page``):
a product with fewer tests is then complete in one round trip, and a longer
list goes on at the page after them. A 500 there (a broken test among them)
leaves the walk to the pages, whose shrinking loses only the broken test.

A walk expected to go deep reads ahead (``read_ahead``): page N+1 does not need
page N's answer, so pages the store says exist are fetched in parallel, and
pages past that are fetched speculatively, only into request slots nobody else
wants and never during a 429 pause. Pages are still checked and handed over in
order; a short page cancels every request past it not yet sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from testio_sync.api.slots import request_priority, shared_budget
from testio_sync.dates import parse_api_time
from testio_sync.errors import ApiError, AuthError, BadResponseError

if TYPE_CHECKING:
    from testio_sync.api.client import ApiClient

__all__ = [
    "UNPAGED_LIMIT",
    "BrokenSlot",
    "PageLoopError",
    "TestPage",
    "TestPageWalker",
    "UnreadablePagesError",
    "iter_test_pages",
]

logger = logging.getLogger(__name__)

# Page sizes tried, in order, when a page answers 500 (the sizes the API is known to serve).
SHRINK_SIZES = (10, 5, 2, 1)
# Without ``page`` the API answers the newest this many tests, in the pages' order.
UNPAGED_LIMIT = 150
# Speculative pages (past what the store says exists) a deep walk may have in flight:
# a few at first, one more for every READ_AHEAD_GROWTH pages walked page by page. Each is
# a request wasted if the list ends before it, so the window grows only as the walk
# proves deep.
READ_AHEAD_START = 2
READ_AHEAD_GROWTH = 16


class PageLoopError(BadResponseError):
    """A page repeated the previous page's tests exactly; walking on would never end."""


class UnreadablePagesError(ApiError):
    """A page's worth of positions in a row failed at every page size: the list is broken."""


@dataclass
class BrokenSlot:
    """A test that fails even alone; known by its position and its nearest loaded neighbours."""

    product_id: int
    position: int
    prev_test_id: int | None = None
    prev_end_at: str | None = None
    next_test_id: int | None = None
    next_end_at: str | None = None


@dataclass
class TestPage:
    """One page of tests with the context a caller needs to decide whether to go on."""

    __test__ = False  # not a pytest test class

    product_id: int
    page: int  # for the newest tests in one answer: the last page they stand for
    per_page: int
    start_position: int  # 0-based offset of the first slot
    tests: list[dict[str, Any]]
    broken: list[BrokenSlot]
    recovered: bool  # the page failed and was refetched in smaller pages
    is_last: bool  # the list really ended here
    warnings: list[str] = field(default_factory=list)

    @property
    def slots(self) -> int:
        """Positions this page accounts for: loaded tests plus broken ones."""
        return len(self.tests) + len(self.broken)


@dataclass
class _Range:
    """What a recovery found in a range of positions."""

    tests: dict[int, dict[str, Any]] = field(default_factory=dict)
    broken: list[int] = field(default_factory=list)
    end: int | None = None  # first position past the end of the list, if seen


_Tail = tuple[int, dict[str, Any]]  # position and payload of the last test loaded


@dataclass
class _Seen:
    """What the walker remembers of the page it fetched last."""

    number: int
    ids: list[Any]
    tail: _Tail | None


class TestPageWalker:
    """Walks one product's test pages from ``start_page`` to the real end of the list.

    State (current page, the previous page's ids and last test, warnings, why the
    walk stopped) lives on the walker, so a caller can stop after any page.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        client: ApiClient,
        product_id: int,
        *,
        per_page: int = 25,
        start_page: int = 1,
        priority: int = 0,
    ) -> None:
        if per_page < 1 or start_page < 1:
            raise ValueError("per_page and start_page must be at least 1")
        self.client = client
        self.product_id = product_id
        self.per_page = per_page
        self.page = start_page
        self.priority = priority  # read-ahead at depth N asks with priority + N
        self.warnings: list[str] = []
        self.stop_reason: str | None = None  # "short_page" or "empty_page" once ended
        self._previous: _Seen | None = None  # the page fetched last
        self._broken_run = 0  # unreadable positions in a row up to the last page checked
        self._ahead: dict[int, asyncio.Task[list[dict[str, Any]]]] = {}
        self._end_page: int | None = None  # a page read ahead came back short: the end
        self._window: tuple[int, int, bool] | None = None  # next page, known pages, speculate
        self._taken = 0  # the highest page fetch_page took
        self._newest: asyncio.Task[list[dict[str, Any]]] | None = None
        self._first_page = start_page  # the first page fetched as a page

    async def pages(self) -> AsyncIterator[TestPage]:
        """Yield pages until the list ends; safe to leave early (``break``/``aclose``).

        Raises:
            PageLoopError: a page repeated the previous one.
            ApiError: any failure other than a page's 500 (which is shrunk instead).
        """
        while self.stop_reason is None:
            page = await self.fetch_page(self.page)
            if page.is_last:
                self.stop_reason = "empty_page" if page.slots == 0 else "short_page"
            self.page += 1
            yield page

    async def fetch_page(self, page_number: int) -> TestPage:
        """Fetch one page, shrinking it on a 500, with neighbours and order checked.

        Pages may be fetched in any order; what the previous page tells (its last
        test, its ids for the loop guard) is used only when it was ``page_number - 1``.

        Raises:
            PageLoopError: the page repeats the previous page's tests exactly.
            ApiError: any failure other than the page's 500 (which is shrunk instead).
        """
        previous = self._previous
        if previous is not None and previous.number != page_number - 1:
            previous = None
        tail = previous.tail if previous else None
        start = (page_number - 1) * self.per_page
        page = TestPage(self.product_id, page_number, self.per_page, start, [], [], False, False)
        try:
            items = await self._first_answer(page_number)
        except ApiError as exc:
            if exc.status != 500:
                raise
            logger.warning(
                "Page %d of product %d's tests failed (HTTP 500); refetching in smaller pages",
                page_number,
                self.product_id,
            )
            sizes = tuple(s for s in SHRINK_SIZES if s < self.per_page)
            found = await self._recover(start, start + self.per_page, sizes)
            page.recovered = True
            page.tests = [found.tests[p] for p in sorted(found.tests)]
            page.broken = [BrokenSlot(self.product_id, p) for p in sorted(found.broken)]
            page.is_last = page.slots < self.per_page
            if page.broken:
                await self._fill_neighbours(page, found.tests, tail)
            last_position = max(found.tests, default=None)
        else:
            page.tests = items
            page.is_last = page.slots < self.per_page
            last_position = start + len(items) - 1 if items else None
        self._count_unreadable(page, in_order=previous is not None or page_number == 1)
        ids = [t.get("id") for t in page.tests]
        if previous is not None and ids and ids == previous.ids:
            raise PageLoopError(
                f"Page {page_number} of product {self.product_id}'s tests repeats the "
                "previous page; stopping the walk",
                path=f"products/{self.product_id}/exploratory_tests",
            )
        self._check_order(page, tail)
        if last_position is not None:
            tail = (last_position, page.tests[-1])
        self._previous = _Seen(page_number, ids, tail)
        return page

    # -- the newest tests in one request -------------------------------------------

    @property
    def can_fetch_newest(self) -> bool:
        """Whether the walk is still at its start and pages line up after the newest tests."""
        return UNPAGED_LIMIT % self.per_page == 0 and self.page == 1 and self._taken == 0

    def start_newest(self, *, when_full: Callable[[], None] | None = None) -> None:
        """Ask for the newest tests now, for ``fetch_newest`` to take.

        ``when_full`` runs as soon as a full answer lands (the list goes on past it),
        before anyone takes it: the place to start reading the next pages ahead.
        """
        if self._newest is None and self.can_fetch_newest:
            self._newest = asyncio.get_running_loop().create_task(self._ask_newest())

            def landed(task: asyncio.Task[list[dict[str, Any]]]) -> None:
                if task.cancelled() or task.exception() is not None:  # retrieved: not logged
                    return
                if when_full is not None and len(task.result()) == UNPAGED_LIMIT:
                    when_full()

            self._newest.add_done_callback(landed)

    async def _ask_newest(self) -> list[dict[str, Any]]:
        # Above a first page and the features: the pages past it wait for its answer.
        request_priority.set(self.priority + 2)
        return await self.client.fetch_newest_tests(self.product_id)

    async def fetch_newest(self) -> TestPage | None:
        """The newest ``UNPAGED_LIMIT`` tests as one page: the first pages in one request.

        A shorter answer is the whole list (``is_last``). After a full one the walker
        goes on at the page past it, with its last test as the next page's neighbour.
        Returns None, taking nothing, when the request answered 500 (a broken test
        among them) or more tests than the API serves so: walk the pages from page 1.

        Raises:
            ApiError: any failure other than a 500.
        """
        task, self._newest = self._newest, None
        if not self.can_fetch_newest:
            return None
        try:
            if task is None:
                tests = await self._ask_newest()
            else:
                tests = await task
        except ApiError as exc:
            if exc.status != 500:
                raise
            logger.warning(
                "The newest tests of product %d failed (HTTP 500); walking page by page",
                self.product_id,
            )
            return None
        if len(tests) > UNPAGED_LIMIT:
            logger.warning(
                "Product %d: %d tests came back without pages (at most %d expected); "
                "walking page by page",
                self.product_id,
                len(tests),
                UNPAGED_LIMIT,
            )
            return None
        number = UNPAGED_LIMIT // self.per_page
        full = len(tests) == UNPAGED_LIMIT
        page = TestPage(self.product_id, number, UNPAGED_LIMIT, 0, tests, [], False, not full)
        self._check_order(page, None)
        if full:
            tail = tests[-self.per_page :]
            self._previous = _Seen(number, [t.get("id") for t in tail], (len(tests) - 1, tail[-1]))
            self._taken = number
            self.page = self._first_page = number + 1
        else:
            self.stop_reason = "empty_page" if not tests else "short_page"
        return page

    # -- read-ahead ----------------------------------------------------------------

    def read_ahead(self, next_page: int, *, known_pages: int = 0, speculate: bool = True) -> None:
        """Keep ``next_page`` and the pages after it in flight, for ``fetch_page`` to take.

        Pages up to ``known_pages`` (pages the caller knows exist) start at once, at
        most one per request slot. With ``speculate``, later pages start too, but
        only into slots nobody else wants or whose waiters they outrank
        (``RequestBudget.spare``), at most ``READ_AHEAD_START``
        plus one per ``READ_AHEAD_GROWTH`` pages walked; each is wasted if the list
        ends first.
        Nothing new starts during a 429 pause or past a page seen short. The window
        tops itself up as pages land, so saving pages never starves it.
        """
        self._window = (next_page, known_pages, speculate)
        self._top_up()

    def close(self) -> None:
        """Cancel every page read ahead and not taken (safe to call more than once)."""
        self._window = None
        for task in self._ahead.values():
            task.cancel()
        self._ahead.clear()
        if self._newest is not None:
            self._newest.cancel()
            self._newest = None

    @property
    def pages_ahead(self) -> list[int]:
        """Pages fetched or being fetched ahead, not taken yet."""
        return sorted(self._ahead)

    def _top_up(self) -> None:
        if self._window is None:
            return
        asked, known_pages, speculate = self._window
        next_page = max(asked, self._taken + 1)  # taken pages are never asked again
        budget = shared_budget(self.client.max_concurrent)
        if budget.paused:
            return
        landed = next_page  # the first page whose full answer is not in yet
        while landed in self._ahead and self._full(self._ahead[landed]):
            landed += 1
        last = next_page + budget.slots.size - 1  # answers held: one page per slot
        if self._end_page is not None:
            last = min(last, self._end_page)
        spare = budget.spare(self.priority + landed)  # the priority ``_start`` gives them
        walked = landed - self._first_page  # page by page: the newest tests do not count
        allowed = READ_AHEAD_START + walked // READ_AHEAD_GROWTH if speculate else 0
        guesses = 0
        for number in range(next_page, last + 1):
            if number == asked or number <= known_pages:
                if number not in self._ahead:
                    self._start(number, landed)
                continue
            guesses += 1
            if number in self._ahead:
                continue
            if spare < 1 or guesses > allowed:
                break
            spare -= 1
            self._start(number, landed)

    def _full(self, task: asyncio.Task[list[dict[str, Any]]]) -> bool:
        return (
            task.done()
            and not task.cancelled()
            and task.exception() is None
            and len(task.result()) >= self.per_page
        )

    def _start(self, number: int, depth: int) -> None:
        async def fetch() -> list[dict[str, Any]]:
            request_priority.set(self.priority + depth)
            return await self.client.fetch_test_page(self.product_id, number, self.per_page)

        task = asyncio.get_running_loop().create_task(fetch())
        task.add_done_callback(lambda done: self._landed(number, done))
        self._ahead[number] = task

    def _landed(self, number: int, task: asyncio.Task[list[dict[str, Any]]]) -> None:
        """A page read ahead came back: if short, drop every request past it; else go on."""
        if task.cancelled() or task.exception() is not None:  # retrieved: never logged
            return
        if len(task.result()) >= self.per_page:
            self._top_up()
            return
        if self._end_page is None or number < self._end_page:
            self._end_page = number
        for later in [n for n in self._ahead if n > number]:
            self._ahead.pop(later).cancel()

    async def _first_answer(self, number: int) -> list[dict[str, Any]]:
        """The page's plain answer: from the read-ahead when started, else fetched now."""
        self._taken = max(self._taken, number)
        task = self._ahead.pop(number, None)
        if task is not None and not task.cancelled():
            try:
                return await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are cancelled, not just the read-ahead
        return await self.client.fetch_test_page(self.product_id, number, self.per_page)

    def _count_unreadable(self, page: TestPage, *, in_order: bool) -> None:
        """Stop when a page's worth of positions in a row failed even alone.

        One broken test is a record to keep; ``per_page`` of them in a row is a list
        that fails whatever is asked (past its real end too), and recording position
        after position would never end. The next sync tries again.
        """
        run = self._broken_run if in_order else 0
        broken = {slot.position for slot in page.broken}
        for position in range(page.start_position, page.start_position + page.slots):
            run = run + 1 if position in broken else 0
            if run >= self.per_page:
                raise UnreadablePagesError(
                    f"{run} tests in a row of product {self.product_id} could not be fetched "
                    f"at any page size (positions {position - run + 1} to {position}); "
                    "the walk stopped, the next sync retries",
                    status=500,
                    path=f"products/{self.product_id}/exploratory_tests",
                )
        self._broken_run = run

    async def _recover(self, lo: int, hi: int, sizes: tuple[int, ...]) -> _Range:
        """Refetch positions ``[lo, hi)`` in pages of ``sizes[0]``; recurse into failures."""
        found = _Range()
        if not sizes:
            found.broken = list(range(lo, hi))
            return found
        size, smaller = sizes[0], sizes[1:]
        numbers = range(lo // size + 1, (hi - 1) // size + 2)
        results = await asyncio.gather(
            *(self.client.fetch_test_page(self.product_id, n, size) for n in numbers),
            return_exceptions=True,
        )
        for number, result in zip(numbers, results, strict=True):
            first = (number - 1) * size
            a, b = max(lo, first), min(hi, first + size)
            if isinstance(result, BaseException):
                if not (isinstance(result, ApiError) and result.status == 500):
                    raise result
                sub = await self._recover(a, b, smaller)
                found.tests.update(sub.tests)
                found.broken.extend(sub.broken)
                if sub.end is not None:
                    found.end = sub.end
                    break
                continue
            for offset, test in enumerate(result):
                if a <= first + offset < b:
                    found.tests[first + offset] = test
            if len(result) < size:
                found.end = first + len(result)
                break
        return found

    async def _fill_neighbours(
        self, page: TestPage, tests: dict[int, dict[str, Any]], tail: _Tail | None
    ) -> None:
        """Name each broken slot by the nearest tests that loaded on either side of it.

        Neighbours may lie on the adjacent pages: the previous page's last test is
        remembered, and at most one test on each side is fetched when not known.
        """
        before_page: dict[str, Any] | None = None
        after_page: dict[str, Any] | None = None
        if not tests or min(tests) > page.broken[0].position:
            if tail is not None:
                before_page = tail[1]
            elif page.start_position > 0:
                before_page = await self._fetch_one(page.start_position - 1)
        if not page.is_last and (not tests or max(tests) < page.broken[-1].position):
            after_page = await self._fetch_one(page.start_position + self.per_page)
        for slot in page.broken:
            before = [p for p in tests if p < slot.position]
            after = [p for p in tests if p > slot.position]
            prev = tests[max(before)] if before else before_page
            nxt = tests[min(after)] if after else after_page
            if prev is not None:
                slot.prev_test_id, slot.prev_end_at = prev.get("id"), prev.get("end_at")
            if nxt is not None:
                slot.next_test_id, slot.next_end_at = nxt.get("id"), nxt.get("end_at")

    async def _fetch_one(self, position: int) -> dict[str, Any] | None:
        """The test at one position, or None if it is broken too, past the end, or unreachable.

        Neighbours only help to find a broken test later, so failing to load one
        never fails the page; a refused token still stops everything.
        """
        try:
            items = await self.client.fetch_test_page(self.product_id, position + 1, 1)
        except AuthError:
            raise
        except ApiError as exc:
            logger.info(
                "No neighbour at position %d of product %d: %s", position, self.product_id, exc
            )
            return None
        return items[0] if items else None

    def _check_order(self, page: TestPage, tail: _Tail | None) -> None:
        """Warn (never fail) when ``end_at`` is not descending, within or across pages."""
        chain = ([tail[1]] if tail else []) + page.tests
        previous: tuple[Any, Any] | None = None
        for test in chain:
            try:
                when = parse_api_time(test.get("end_at"))
            except (TypeError, ValueError):
                when = None
            if when is None:
                continue
            if previous is not None and when > previous[1]:
                message = (
                    f"Product {self.product_id} page {page.page}: test {test.get('id')} ends "
                    f"after test {previous[0]} listed before it (end_at not descending)"
                )
                page.warnings.append(message)
                self.warnings.append(message)
                logger.warning("%s", message)
            previous = (test.get("id"), when)


async def iter_test_pages(
    client: ApiClient, product_id: int, *, per_page: int = 25, start_page: int = 1
) -> AsyncIterator[TestPage]:
    """Yield a product's test pages from ``start_page`` until the list really ends.

    Raises:
        PageLoopError: a page repeated the previous one.
        ApiError: any failure other than a page's 500 (which is shrunk instead).
    """
    walker = TestPageWalker(client, product_id, per_page=per_page, start_page=start_page)
    pages = walker.pages()
    try:
        async for page in pages:
            yield page
    finally:
        await pages.aclose()
