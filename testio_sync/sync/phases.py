"""One function per phase: PRODUCTS, FEATURES, NEW_TESTS, BUGS.

Products run concurrently inside a phase (the client's request budget bounds
the concurrency); a failure of one product is recorded and the others go on.
Only a refused token or a stop request ends a phase early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from testio_sync.errors import AccessError, ApiError, AuthError, StoreError
from testio_sync.store import queries, save
from testio_sync.store.models import ExploratoryTest, database
from testio_sync.sync.budget import BudgetGate
from testio_sync.sync.context import RunContext, StopRequested
from testio_sync.sync.discovery import ProductWalk
from testio_sync.sync.types import SyncPhase

BUG_GROUP_SIZE = 15  # test ids per bug request: the batch size known to pass the edge


def unwrap_group(group: BaseExceptionGroup) -> BaseException:
    """The error to raise for a failed task group: a fatal one first, else the first."""
    for kind in (AuthError, StopRequested):
        match = group.subgroup(kind)
        if match is not None:
            group = match
            break
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _check_stop(ctx: RunContext) -> None:
    if ctx.should_stop():
        raise StopRequested("The sync was stopped before it finished.")


def _record_api_error(ctx: RunContext, what: str, exc: ApiError) -> None:
    ctx.api_failures += 1
    if isinstance(exc, AccessError):
        ctx.warn(f"{what}: {exc}")
    else:
        ctx.error(f"{what}: {exc}")


async def resolve_scope(ctx: RunContext) -> None:
    """Fix the products a run works on before its first phase.

    Without PRODUCTS in the run, scoped products missing from the store are
    fetched first (tests need their product row).
    """
    wanted = ctx.request.scope.product_ids
    with database.connection_context():
        stored = set(queries.product_ids())
    if wanted is None:
        ctx.product_ids = sorted(stored)
    else:
        ctx.product_ids = list(wanted)
    if ctx.request.phases[0].value == "products" or ctx.request.options.nuke:
        return
    if wanted is None and not stored:
        ctx.product_ids = [int(p["id"]) for p in await _fetch_and_save_products(ctx, None)]
        return
    for pid in [p for p in ctx.product_ids if p not in stored]:
        try:
            await ctx.repos.get_product_cached_or_refresh(pid)
            ctx.api_successes += 1
        except ApiError as exc:
            _record_api_error(ctx, f"Product {pid}", exc)
            ctx.product_ids.remove(pid)


async def _fetch_and_save_products(ctx: RunContext, wanted: Sequence[int] | None) -> list[dict]:
    listed = await ctx.client.fetch_products()
    ctx.api_successes += 1
    selected = [p for p in listed if wanted is None or int(p["id"]) in wanted]
    save.save_products(selected, now=ctx.now())
    return selected


async def run_products(ctx: RunContext) -> None:
    """Refresh product metadata; a full-scope run also drops products gone upstream."""
    wanted = ctx.request.scope.product_ids
    try:
        listed = await ctx.client.fetch_products()
    except AuthError:
        raise
    except ApiError as exc:
        _record_api_error(ctx, "Product list", exc)
        if not ctx.product_ids:
            raise
        ctx.warn("Continuing with the products already stored.")
        return
    ctx.api_successes += 1
    listed_ids = {int(p["id"]) for p in listed}
    selected = [p for p in listed if wanted is None or int(p["id"]) in wanted]
    for pid in sorted(set(wanted or ()) - listed_ids):
        ctx.error(f"Product {pid} is not visible to this token (not in the product list).")
    save.save_products(selected, now=ctx.now())
    if wanted is None:
        with database.connection_context():
            gone = sorted(set(queries.product_ids()) - listed_ids)
        if gone:
            save.wipe(gone)
            ctx.warn(f"Removed {len(gone)} products no longer listed upstream: {gone}")
    ctx.product_ids = sorted(int(p["id"]) for p in selected)
    ctx.result.products_synced = len(selected)
    ctx.emit(products_done=len(selected), products_total=len(selected))


async def run_product_pipeline(ctx: RunContext, phases: Sequence[SyncPhase]) -> None:
    """FEATURES, NEW_TESTS and BUGS for every product, pipelined.

    For each product the phases run in order (features, then the page walk);
    the bugs of each page's tests are fetched as soon as the page is stored,
    and the stale bugs of the product's other tests once its walk ended. Products
    run side by side, so the request budget stays busy while the longest walk
    (the chain that bounds the wall time) goes on.
    """
    gate = BudgetGate(ctx.settings.max_concurrent_requests)
    force = ctx.request.options.force_refresh or ctx.request.options.nuke
    failed_bugs: dict[int, str] = {}
    try:
        async with asyncio.TaskGroup() as group:
            _start_pipeline(ctx, group, gate, phases, force, failed_bugs)
    except BaseExceptionGroup as eg:
        raise unwrap_group(eg) from None
    if failed_bugs:
        ctx.api_failures += len(failed_bugs)
        sample = ", ".join(f"{tid} ({msg})" for tid, msg in list(failed_bugs.items())[:3])
        ctx.error(f"Bugs of {len(failed_bugs)} tests could not be fetched: {sample}")


def _start_pipeline(
    ctx: RunContext,
    group: asyncio.TaskGroup,
    gate: BudgetGate,
    phases: Sequence[SyncPhase],
    force: bool,
    failed_bugs: dict[int, str],
) -> None:
    with_bugs = SyncPhase.BUGS in phases
    scheduled: set[int] = set()

    def flush(test_ids: Sequence[int]) -> None:
        for i in range(0, len(test_ids), BUG_GROUP_SIZE):
            group.create_task(bug_group(list(test_ids[i : i + BUG_GROUP_SIZE])))

    def schedule_bugs(test_ids: Sequence[int], buffer: list[int] | None = None) -> None:
        """Queue bug refreshes in full batches; a buffer holds a partial batch back."""
        fresh = [t for t in test_ids if t not in scheduled]
        scheduled.update(fresh)
        if buffer is None:
            flush(fresh)
            return
        buffer.extend(fresh)
        full = len(buffer) - len(buffer) % BUG_GROUP_SIZE
        flush(buffer[:full])
        del buffer[:full]

    async def bug_group(test_ids: list[int]) -> None:
        _check_stop(ctx)
        # The ids were chosen as stale, new or changed just now: no second look.
        report = await ctx.repos.refresh_bugs(test_ids, force=True, fetch_slot=gate.bulk_slot)
        ctx.api_successes += report.refreshed
        failed_bugs.update(report.failed)
        ctx.result.bugs_refreshed += report.saved
        ctx.emit(bugs_refreshed=ctx.result.bugs_refreshed)

    async def product(pid: int) -> None:
        held: list[int] = []  # this product's walked tests not yet in a full batch
        try:
            if with_bugs:  # stored tests with stale bugs need no walk first: start now
                schedule_bugs(_tests_needing_bugs(ctx, pid, force=force))
            async with gate.walk():
                if SyncPhase.FEATURES in phases:
                    await _features_of(ctx, pid, force=force)
                if SyncPhase.NEW_TESTS in phases:
                    on_page = (lambda ids: schedule_bugs(ids, held)) if with_bugs else None
                    await ProductWalk(ctx, pid, on_page=on_page).run()
            if with_bugs:
                schedule_bugs(_tests_needing_bugs(ctx, pid, force=force), held)
                flush(held)
        except (AuthError, StopRequested):
            raise
        except ApiError as exc:
            _record_api_error(ctx, f"Product {pid}", exc)
        except StoreError as exc:
            ctx.error(f"Product {pid}: {exc}")
        ctx.emit(products_done=ctx.progress.products_done + 1)

    for pid in ctx.product_ids:
        group.create_task(product(pid))


async def _features_of(ctx: RunContext, pid: int, *, force: bool) -> None:
    try:
        report = await ctx.repos.refresh_features(pid, force=force)
    except AuthError:
        raise
    except ApiError as exc:
        _record_api_error(ctx, f"Features of product {pid}", exc)
        return
    ctx.api_successes += report.refreshed
    ctx.result.features_refreshed += report.saved


def _tests_needing_bugs(ctx: RunContext, pid: int, *, force: bool) -> list[int]:
    """The product's tests in scope whose bugs are stale (all of them when forced)."""
    since = ctx.request.scope.since_date
    with database.connection_context():
        if not force:
            return queries.tests_needing_bugs(
                product_ids=[pid], since=since, ttl_s=ctx.settings.cache_ttl_s, now=ctx.now()
            )
        query = ExploratoryTest.select(ExploratoryTest.id).where(ExploratoryTest.product == pid)
        if since is not None:
            query = query.where(
                (ExploratoryTest.end_at >= since) | ExploratoryTest.end_at.is_null()
            )
        return [t.id for t in query]
