"""NEW_TESTS for one product: walk the ``end_at``-descending pages and keep the store equal.

The API has no delta endpoint and no total, so the walk decides alone when it
has seen enough:

- a forced walk, a product with an unresolved broken test, and a product whose
  list was never walked to its end (a first walk killed midway) go to the end;
- ``since`` stops at the first page whose tests all ended before it;
- otherwise the walk stops at the first page holding an already-stored test,
  plus one page when stored tests above that point were not seen (they may
  have moved down; the contract's "one page more"), and stored tests above
  the walked window that are still unseen were deleted upstream;
- a **tail probe** then reads the one page where the product's oldest stored
  test should sit: if the ids there are where the store says they should be,
  nothing below the window changed; if not (a test deleted deep in the list),
  the walk goes on to the end and reconciles the whole product.

A complete walk (to the end, no ``since``) removes every stored test the API no
longer lists, except those sitting where a broken test is.

A walk that must reach the end starts with one request for the newest
``UNPAGED_LIMIT`` tests (a smaller product is then done in one round trip;
not when a broken test is pending, which fails that request every time), then
it and the walk on after a tail-probe mismatch read ahead: the pages the store
says exist are fetched in parallel, later ones speculatively into idle request
slots (``TestPageWalker.read_ahead``). A walk expected to stop early fetches
one page at a time, so an incremental sync with nothing new still costs two
requests per product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from testio_sync.api.pages import UNPAGED_LIMIT, TestPage, TestPageWalker
from testio_sync.api.slots import request_priority
from testio_sync.dates import parse_api_time
from testio_sync.store import queries, save
from testio_sync.store.models import BrokenTest, ExploratoryTest, Product, database
from testio_sync.sync.context import RunContext
from testio_sync.sync.removals import removal_refused

PER_PAGE = 25
WALK_PRIORITY = 10  # above bulk work (bug batches), which keeps priority 0


def _end_at(test: dict[str, Any]) -> datetime | None:
    return parse_api_time(test.get("end_at"))


class ProductWalk:
    """One product's walk: fetch, save, decide whether to go on, reconcile."""

    def __init__(
        self,
        ctx: RunContext,
        pid: int,
        *,
        on_page: Callable[[Sequence[int]], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.on_page = on_page
        self.pid = pid
        options = ctx.request.options
        self.force = options.force_refresh or options.nuke
        self.since = ctx.request.scope.since_date
        self.walker = TestPageWalker(ctx.client, pid, per_page=PER_PAGE, priority=WALK_PRIORITY)
        with database.connection_context():
            product = Product.get_or_none(Product.id == pid)
            # The store holds the product's whole history only after a walk reached the
            # end; before that (a first walk killed midway, a wipe) walk to the end.
            self.history_complete = product is not None and product.tests_complete_at is not None
            self.known = queries.stored_test_ids(pid)
            self.pending_broken = list(
                BrokenTest.select().where(
                    (BrokenTest.product_id == pid) & BrokenTest.resolved_at.is_null()
                )
            )
        self.seen: set[int] = set()
        self.broken: list[tuple[int | None, int | None]] = []
        self.last_test: dict[str, Any] | None = None  # the oldest test walked so far
        self.next_page = 1
        self.complete = False
        self.cut_by_since = False

    @property
    def stats(self) -> dict[str, int]:
        """The product's line in the result, made when the walk first saves."""
        return self.ctx.product_stats(self.pid)

    # -- fetching and saving -------------------------------------------------------

    async def fetch(self, number: int, *, walker: TestPageWalker | None = None) -> TestPage:
        self.ctx.raise_if_stopped()
        # Deeper walks are likelier the longest chain: serve their requests first.
        request_priority.set(WALK_PRIORITY + number)
        page = await (walker or self.walker).fetch_page(number)
        self.ctx.api_successes += 1
        for message in page.warnings:
            self.ctx.warn(message)
        return page

    async def save(self, page: TestPage) -> None:
        now = self.ctx.now()
        counts = await self.ctx.write(save.save_tests, self.pid, page.tests, now=now)
        self.seen.update(int(t["id"]) for t in page.tests)
        if page.tests:
            self.last_test = page.tests[-1]
        for slot in page.broken:
            save.record_broken_test(
                self.pid,
                slot.position,
                slot.prev_test_id,
                parse_api_time(slot.prev_end_at),
                slot.next_test_id,
                parse_api_time(slot.next_end_at),
                now=now,
            )
            self.broken.append((slot.prev_test_id, slot.next_test_id))
            self.ctx.error(
                f"Product {self.pid}: the test at position {slot.position} cannot be fetched "
                f"(between tests {slot.prev_test_id} and {slot.next_test_id}); recorded, "
                "the next sync retries it."
            )
        changed = {*counts.new_ids, *counts.updated_ids}
        if self.since is not None:  # a page may reach past ``since``: those are out of scope
            changed -= {int(t["id"]) for t in page.tests if self._before_since(t)}
        if self.on_page is not None and changed:
            # A new or changed test may have new bugs, whatever their age says.
            self.on_page(sorted(changed))
        result = self.ctx.result
        result.tests_discovered += counts.new
        result.tests_updated += counts.updated
        self.stats["tests_new"] += counts.new
        self.stats["tests_updated"] += counts.updated
        self.stats["pages"] += 1
        self.ctx.emit(
            pages=self.ctx.progress.pages + 1,
            tests_found=self.ctx.progress.tests_found + counts.new,
        )

    # -- the walk ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the first pages now: fetching them needs nothing (saving needs features).

        A deep walk over a stored history fetches the pages it knows of; any other
        walk asks for page 1 only, which it needs whatever it finds: guessing past
        it would crowd out the features every walk waits for.
        """
        if self._newest_first():
            past = UNPAGED_LIMIT // PER_PAGE + 1  # the first page past the newest tests
            self.walker.start_newest(when_full=lambda: self._read_ahead(past))
            if self.history_complete and len(self.known) >= UNPAGED_LIMIT:
                self._read_ahead(past)  # known to exist: no need to wait
        elif self._goes_deep() and self.since is None and self.history_complete:
            self._read_ahead()  # pages the store knows of: no guess
        else:
            self.walker.read_ahead(1, speculate=False)

    def close(self) -> None:
        """Drop the pages read ahead and not walked (the walk ended or never ran)."""
        self.walker.close()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.close()  # pages read ahead past where the walk ended

    def _goes_deep(self) -> bool:
        """Whether the walk must reach the end of the list, as far as is known before it."""
        if self.force or self.pending_broken:
            return True
        return self.since is None and not self.history_complete

    def _newest_first(self) -> bool:
        """Whether the walk starts with the newest tests in one request (see the module)."""
        return (
            self._goes_deep()
            and self.since is None
            and not self.pending_broken
            and self.walker.can_fetch_newest
        )

    async def _fetch_newest(self) -> None:
        """The newest tests in one request, saved; on a 500 the pages take over from page 1."""
        self.ctx.raise_if_stopped()
        request_priority.set(WALK_PRIORITY + 1)
        page = await self.walker.fetch_newest()
        if page is None:
            return
        self.ctx.api_successes += 1
        for message in page.warnings:
            self.ctx.warn(message)
        self.next_page = page.page + 1
        await self.save(page)
        self.complete = page.is_last

    def _read_ahead(self, first: int | None = None) -> None:
        """Keep pages from ``first`` (default: the next) in flight; the store says how many exist.

        With the whole history stored, its count is the list's length give or take
        what changed: no guessing past it. Without it, guess past the stored pages.
        """
        first = self.next_page if first is None else first
        if self.history_complete:
            self.walker.read_ahead(
                first, known_pages=len(self.known) // PER_PAGE + 1, speculate=False
            )
        else:
            self.walker.read_ahead(first, known_pages=len(self.known) // PER_PAGE)

    async def _run(self) -> None:
        must_finish = self._goes_deep()
        extra_page_taken = False
        if self._newest_first():
            await self._fetch_newest()
        while not self.complete:
            if must_finish and self.since is None:
                self._read_ahead()
            page = await self.fetch(self.next_page)
            self.next_page += 1
            if self.since is not None and self._older_than_since(page):
                self.cut_by_since = True
                break
            await self.save(page)
            if page.is_last:
                self.complete = True
                break
            if page.broken:
                must_finish = True
            if must_finish:
                continue
            if not any(int(t["id"]) in self.known for t in page.tests):
                continue
            if extra_page_taken or not self._unseen_above_window():
                break
            extra_page_taken = True  # stored tests above were not seen: maybe moved down
        if self.complete:
            self._reconcile_complete()
        else:
            self._reconcile_window()
            if self.since is None and not self.cut_by_since and not await self._tail_matches():
                await self._walk_to_end()
        if not self.cut_by_since and (self.complete or self.pending_broken):
            save.resolve_broken_tests(self.pid, self.broken, now=self.ctx.now())
        save.touch_product(self.pid, now=self.ctx.now(), field="tests_synced_at")
        if self.complete and self.since is None:
            save.touch_product(self.pid, now=self.ctx.now(), field="tests_complete_at")

    def _before_since(self, test: dict[str, Any]) -> bool:
        end = _end_at(test)
        return self.since is not None and end is not None and end < self.since

    def _older_than_since(self, page: TestPage) -> bool:
        return bool(page.tests) and all(self._before_since(t) for t in page.tests)

    def _unseen_above_window(self) -> list[int]:
        """Stored tests ranked above the oldest walked test that the walk did not see.

        Empty when that test has no ``end_at``: without a position there is no
        window, and nothing may be judged missing.
        """
        last_end = _end_at(self.last_test) if self.last_test else None
        if last_end is None:
            return []
        with database.connection_context():
            query = ExploratoryTest.select(ExploratoryTest.id).where(
                (ExploratoryTest.product == self.pid)
                & ((ExploratoryTest.end_at > last_end) | ExploratoryTest.end_at.is_null())
            )
            return [t.id for t in query if t.id not in self.seen]

    def _reconcile_window(self) -> None:
        """Stored tests that rank above the walked window but were not listed are gone."""
        if self.last_test is None:
            return
        gone = self._unseen_above_window()
        if gone and self._may_remove(len(gone)):
            save.delete_tests(gone)
            self._removed(len(gone))

    def _reconcile_complete(self) -> None:
        if self.since is not None:
            return
        keep = self.seen | self._tests_near_broken()
        with database.connection_context():
            missing = queries.stored_test_ids(self.pid) - keep
        if not missing or not self._may_remove(len(missing)):
            return
        removed = save.delete_missing_tests(self.pid, keep)
        if removed:
            self._removed(len(removed))

    def _may_remove(self, count: int) -> bool:
        """The removal guard: an empty walk, or one removing too many tests, removes none."""
        listed = len(self.seen) + len(self.broken)
        return not removal_refused(
            self.ctx,
            what="tests",
            removing=count,
            stored=len(self.known),
            listed=listed,
            product_id=self.pid,
        )

    def _removed(self, count: int) -> None:
        self.ctx.result.tests_removed += count
        tests = "1 test" if count == 1 else f"{count} tests"
        self.ctx.warn(f"Product {self.pid}: removed {tests} no longer listed upstream.")

    async def _tail_matches(self) -> bool:
        """Read the page where the oldest stored test should be; True if it is there.

        Ranks are taken from the store (``end_at`` descending): the test at rank
        ``r`` must be at position ``r`` upstream if nothing below the window changed.
        """
        of_product = ExploratoryTest.product == self.pid
        with database.connection_context():
            total = ExploratoryTest.select().where(of_product).count()
        walked = (self.next_page - 1) * PER_PAGE
        if total <= walked:
            return True
        number = (total - 1) // PER_PAGE + 1
        start = (number - 1) * PER_PAGE
        with database.connection_context():
            expected = {
                t.id
                for t in ExploratoryTest.select(ExploratoryTest.id)
                .where(of_product)
                .order_by(ExploratoryTest.end_at.desc(nulls="first"), ExploratoryTest.id)
                .offset(start)
            }
        # A walker of its own: the probe is not adjacent to the walked pages.
        probe = TestPageWalker(self.ctx.client, self.pid, per_page=PER_PAGE)
        page = await self.fetch(number, walker=probe)
        if page.broken or page.recovered:
            return False
        upstream = [int(t["id"]) for t in page.tests]
        # Same-instant ties may be listed in either order: compare as sets, plus the end.
        if set(upstream) != expected or start + len(upstream) != total:
            return False
        await self.save(page)  # it matched: keep its fresh copy
        return True

    async def _walk_to_end(self) -> None:
        """Something below the window changed: walk on and reconcile the whole product."""
        while True:
            self._read_ahead()
            page = await self.fetch(self.next_page)
            self.next_page += 1
            await self.save(page)
            if page.is_last:
                break
        self.complete = True
        # The walked window skipped no page, so every listed test was seen.
        self._reconcile_complete()

    def _tests_near_broken(self) -> set[int]:
        """Stored tests where a broken test sits: not listed, but not deleted upstream."""
        if not self.broken and not self.pending_broken:
            return set()
        keep: set[int] = set()
        with database.connection_context():
            records = BrokenTest.select().where(
                (BrokenTest.product_id == self.pid) & BrokenTest.resolved_at.is_null()
            )
            for record in records:
                query = ExploratoryTest.select(ExploratoryTest.id).where(
                    ExploratoryTest.product == self.pid
                )
                if record.prev_end_at is not None:
                    query = query.where(ExploratoryTest.end_at <= record.prev_end_at)
                if record.next_end_at is not None:
                    query = query.where(ExploratoryTest.end_at >= record.next_end_at)
                keep.update(t.id for t in query if t.id not in self.seen)
        return keep
