"""The phases a run steps through: the scope, PRODUCTS, then the per-product pipeline.

PRODUCTS runs alone (every later phase needs its product rows); FEATURES,
NEW_TESTS and BUGS then run per product in ``ProductPipeline``. A failure of
one product is recorded and the others go on; only a refused token or a stop
request ends a run early.
"""

from __future__ import annotations

from collections.abc import Sequence

from testio_sync.api.slots import request_priority
from testio_sync.errors import AccessError, ApiError, AuthError, UnknownProductsError
from testio_sync.store import queries, save
from testio_sync.store.backups import new_backup_path
from testio_sync.store.copy import backup_store
from testio_sync.store.models import database
from testio_sync.sync.context import RunContext
from testio_sync.sync.pipeline import ProductPipeline, record_api_error
from testio_sync.sync.removals import removal_refused
from testio_sync.sync.types import SyncPhase

PRODUCT_LIST_PRIORITY = 1_000_000  # above any walk's pages, however deep


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
    if ctx.request.phases[0] == SyncPhase.PRODUCTS or ctx.request.options.nuke:
        return
    if wanted is None and not stored:  # an empty store and no PRODUCTS: the list first
        listed = await ctx.client.fetch_products()
        ctx.api_successes += 1
        save.save_products(listed, now=ctx.now())
        ctx.product_ids = sorted(int(p["id"]) for p in listed)
        return
    for pid in [p for p in ctx.product_ids if p not in stored]:
        try:
            await ctx.repos.get_product_cached_or_refresh(pid)
            ctx.api_successes += 1
        except ApiError as exc:
            record_api_error(ctx, f"Product {pid}", exc)
            ctx.product_ids.remove(pid)


async def run_products(ctx: RunContext) -> None:
    """Refresh product metadata; a full-scope run also drops products gone upstream."""
    wanted = ctx.request.scope.product_ids
    # Walks may be on their way already: the list that gates every later phase goes first.
    token = request_priority.set(PRODUCT_LIST_PRIORITY)
    try:
        listed = await ctx.client.fetch_products()
    except AuthError:
        raise
    except ApiError as exc:
        if isinstance(exc, AccessError) and exc.status == 404:
            ctx.api_failures += 1
            raise ApiError(  # every later call would 404 too: this is no TestIO API
                f"No TestIO API at {ctx.settings.api_base_url}: its product list answered "
                "HTTP 404; check TESTIO_CUSTOMER_API_BASE_URL.",
                status=404,
                path=exc.path,
            ) from exc
        record_api_error(ctx, "Product list", exc)
        if not ctx.product_ids:
            raise
        ctx.warn("Continuing with the products already stored.")
        return
    finally:
        request_priority.reset(token)
    ctx.api_successes += 1
    listed_ids = {int(p["id"]) for p in listed}
    with database.connection_context():
        unknown = sorted(set(wanted or ()) - listed_ids - set(queries.product_ids()))
    if unknown:  # as ``build_request`` refuses them once the store knows its products
        raise UnknownProductsError(unknown)
    selected = [p for p in listed if wanted is None or int(p["id"]) in wanted]
    for pid in sorted(set(wanted or ()) - listed_ids):
        ctx.error(f"Product {pid} is not visible to this token (not in the product list).")
    save.save_products(selected, now=ctx.now())
    if wanted is None:
        with database.connection_context():
            stored = set(queries.product_ids())
        gone = sorted(stored - listed_ids)
        if not listed and stored:  # a glitch, not an empty account: keep working on the store
            removal_refused(ctx, what="products", removing=len(gone), stored=len(stored), listed=0)
            return
        if gone and not removal_refused(
            ctx, what="products", removing=len(gone), stored=len(stored), listed=len(listed)
        ):
            remove_products(ctx, gone)
    ctx.product_ids = sorted(int(p["id"]) for p in selected)
    ctx.result.products_synced = len(selected)
    ctx.emit(products_done=len(selected), products_total=len(selected))


def remove_products(ctx: RunContext, gone: list[int]) -> None:
    """Back the store up, then remove products gone upstream with their tests and bugs."""
    settings = ctx.settings
    backup = backup_store(
        settings, new_backup_path(settings.backups_dir, "before-removal", ctx.now())
    )
    save.wipe(gone)
    ctx.warn(
        f"Removed {len(gone)} products no longer listed upstream: {gone} "
        f"(the data before is in {backup})."
    )


async def run_product_pipeline(
    ctx: RunContext, phases: Sequence[SyncPhase], pipeline: ProductPipeline | None = None
) -> None:
    """FEATURES, NEW_TESTS and BUGS of every product in scope (see ``ProductPipeline``)."""
    await (pipeline or ProductPipeline(ctx, phases)).run()
