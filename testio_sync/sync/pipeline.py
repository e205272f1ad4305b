"""FEATURES, NEW_TESTS and BUGS for every product in scope, pipelined.

For each product the phases keep their order: features first, then the page
walk (whose first pages are fetched meanwhile: only saving them needs the
features); the bugs of a test are fetched only after the test is stored (pages hand
their new and changed tests over as they land, in full batches). Products run
side by side, so the request budget stays busy while the longest walk, the
chain that bounds a sync's wall time, goes on; walk requests jump the queue of
request slots (``api.slots.request_priority``), bug batches wait their turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from testio_sync.api.slots import request_priority
from testio_sync.errors import AccessError, ApiError, AuthError, StoreError
from testio_sync.store import queries
from testio_sync.store.failures import DiskFullError
from testio_sync.store.models import ExploratoryTest, database
from testio_sync.sync.context import RunContext, StopRequested
from testio_sync.sync.discovery import WALK_PRIORITY, ProductWalk
from testio_sync.sync.types import SyncPhase

BUG_BATCH = 15  # test ids per bug request: the batch size known to pass the edge


def unwrap_group(group: BaseExceptionGroup) -> BaseException:
    """The error to raise for a failed task group: a fatal one first, else the first."""
    for kind in (AuthError, StopRequested, DiskFullError):
        match = group.subgroup(kind)
        if match is not None:
            group = match
            break
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def record_api_error(ctx: RunContext, what: str, exc: ApiError) -> None:
    """403/404 are per-object warnings; anything else is an error of the run."""
    ctx.api_failures += 1
    if isinstance(exc, AccessError):
        ctx.warn(f"{what}: {exc}")
    else:
        ctx.error(f"{what}: {exc}")


class ProductPipeline:
    """One run's per-product work and the bug batches it spawns."""

    def __init__(self, ctx: RunContext, phases: Sequence[SyncPhase]) -> None:
        self.ctx = ctx
        self.phases = set(phases)
        self.with_bugs = SyncPhase.BUGS in self.phases
        options = ctx.request.options
        self.force = options.force_refresh or options.nuke
        # Fetched batches wait for the store writer; bound them so that a writer
        # slower than the network cannot pile answers up in memory.
        self.unsaved = asyncio.Semaphore(2 * ctx.settings.max_concurrent_requests)
        # At most one bug request per request slot on its way: more only queue up in
        # the client, and a sync fetching every bug measured about 10% slower so.
        self.fetching = asyncio.Semaphore(ctx.settings.max_concurrent_requests)
        self.scheduled: set[int] = set()
        self.failed_bugs: dict[int, str] = {}
        self.batches_total = 0
        self.batches_done = 0
        self.products_left = len(ctx.product_ids)
        self._group: asyncio.TaskGroup | None = None
        self._started: dict[int, ProductWalk] = {}  # walks started before the product list

    def start_walks(self) -> None:
        """Start the stored products' walks now, while the product list is on its way.

        A walk's first requests need only what the store holds; the product list
        only confirms which products remain. A product gone upstream has its walk
        dropped unsaved (at most its first requests wasted).
        """
        if SyncPhase.NEW_TESTS not in self.phases:
            return
        with database.connection_context():
            stored = set(queries.product_ids())
        for pid in [p for p in self.ctx.product_ids if p in stored]:
            walk = ProductWalk(self.ctx, pid)
            walk.start()
            self._started[pid] = walk

    def close(self) -> None:
        """Drop the walks started early and never run (their product is gone, or the run failed)."""
        for walk in self._started.values():
            walk.close()
        self._started.clear()

    async def run(self) -> None:
        self.products_left = len(self.ctx.product_ids)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for pid in self.ctx.product_ids:
                    group.create_task(self._product(pid))
        except BaseExceptionGroup as eg:
            raise unwrap_group(eg) from None
        finally:
            self.close()
        if self.failed_bugs:
            self.ctx.api_failures += len(self.failed_bugs)
            sample = ", ".join(f"{t} ({m})" for t, m in list(self.failed_bugs.items())[:3])
            self.ctx.error(f"Bugs of {len(self.failed_bugs)} tests could not be fetched: {sample}")

    # -- products ------------------------------------------------------------------

    async def _product(self, pid: int) -> None:
        held: list[int] = []  # walked tests not yet in a full bug batch
        ctx = self.ctx
        try:
            if self.with_bugs:  # stored tests with stale bugs need no walk: start them now
                self._schedule(self._tests_needing_bugs(pid))
            walk = None
            if SyncPhase.NEW_TESTS in self.phases:
                on_page = (lambda ids: self._schedule(ids, held)) if self.with_bugs else None
                walk = self._started.pop(pid, None)
                if walk is None:
                    walk = ProductWalk(ctx, pid)
                    walk.start()  # its first pages travel while the features are fetched
                walk.on_page = on_page
            try:
                if SyncPhase.FEATURES in self.phases:
                    await self._features(pid)
                if walk is not None:
                    self._stage("new_tests")
                    await walk.run()
            finally:
                if walk is not None:
                    walk.close()
            if self.with_bugs:
                self._schedule(self._tests_needing_bugs(pid), held)
                self._flush(held)
        except (AuthError, StopRequested, DiskFullError):  # every later product would fail too
            raise
        except ApiError as exc:
            record_api_error(ctx, f"Product {pid}", exc)
        except StoreError as exc:
            ctx.error(f"Product {pid}: {exc}")
        self.products_left -= 1
        if self.products_left == 0 and self.with_bugs:
            self._stage("bugs")
        elif ctx.progress.phase != "bugs":
            ctx.emit(products_done=ctx.progress.products_done + 1)

    async def _features(self, pid: int) -> None:
        request_priority.set(WALK_PRIORITY + 1)  # like a first page: no page saves before them
        try:
            report = await self.ctx.repos.refresh_features(pid, force=self.force)
        except AuthError:
            raise
        except ApiError as exc:
            record_api_error(self.ctx, f"Features of product {pid}", exc)
            return
        self.ctx.api_successes += report.refreshed
        self.ctx.result.features_refreshed += report.saved

    def _tests_needing_bugs(self, pid: int) -> list[int]:
        """The product's tests in scope whose bugs are stale (all of them when forced)."""
        since = self.ctx.request.scope.since_date
        with database.connection_context():
            if not self.force:
                return queries.tests_needing_bugs(
                    product_ids=[pid],
                    since=since,
                    ttl_s=self.ctx.settings.cache_ttl_s,
                    now=self.ctx.now(),
                )
            query = ExploratoryTest.select(ExploratoryTest.id).where(ExploratoryTest.product == pid)
            if since is not None:
                query = query.where(
                    (ExploratoryTest.end_at >= since) | ExploratoryTest.end_at.is_null()
                )
            return [t.id for t in query]

    # -- bug batches -------------------------------------------------------------------

    def _schedule(self, test_ids: Sequence[int], buffer: list[int] | None = None) -> None:
        """Queue bug refreshes in full batches; a buffer holds a partial batch back."""
        fresh = [t for t in test_ids if t not in self.scheduled]
        self.scheduled.update(fresh)
        if buffer is None:
            self._flush(fresh)
            return
        buffer.extend(fresh)
        full = len(buffer) - len(buffer) % BUG_BATCH
        self._flush(buffer[:full])
        del buffer[:full]

    def _flush(self, test_ids: Sequence[int]) -> None:
        assert self._group is not None
        for i in range(0, len(test_ids), BUG_BATCH):
            self.batches_total += 1
            self._group.create_task(self._bug_batch(list(test_ids[i : i + BUG_BATCH])))

    async def _bug_batch(self, test_ids: list[int]) -> None:
        ctx = self.ctx
        ctx.raise_if_stopped()
        request_priority.set(0)  # bulk work; the task was created from a walk's context
        # The ids were chosen as stale, new or changed just now: no second look.
        async with self.unsaved:
            report = await ctx.repos.refresh_bugs(test_ids, force=True, fetch_limit=self.fetching)
        ctx.api_successes += report.refreshed
        self.failed_bugs.update(report.failed)
        ctx.result.bugs_refreshed += report.saved
        self.batches_done += 1
        if ctx.progress.phase == "bugs":
            ctx.emit(
                products_done=self.batches_done,
                products_total=self.batches_total,
                bugs_refreshed=ctx.result.bugs_refreshed,
            )
        else:
            ctx.emit(bugs_refreshed=ctx.result.bugs_refreshed)

    # -- progress ----------------------------------------------------------------------

    _ORDER = ("products", "features", "new_tests", "bugs")

    def _stage(self, phase: str) -> None:
        """Move the shown phase forward (never back) as the pipeline advances."""
        ctx = self.ctx
        current = ctx.progress.phase or "products"
        if self._ORDER.index(phase) <= self._ORDER.index(current):
            return
        if phase == "bugs":
            ctx.emit(
                phase=phase, products_done=self.batches_done, products_total=self.batches_total
            )
        else:
            ctx.emit(phase=phase)
