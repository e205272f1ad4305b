"""``run_sync``: run a request's phases in order and build its ``SyncResult``.

The engine knows nothing about huey, locks or where it runs: the job runner
(``sync/runner.py``) claims the run, holds the lock and records the outcome.
Per-object API failures become warnings or errors and the run goes on; a
refused token (401) stops the run at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from testio_sync.api.client import ApiClient
from testio_sync.dates import utc_now
from testio_sync.errors import StoreError, TestioSyncError
from testio_sync.repositories import Repositories
from testio_sync.settings import Settings
from testio_sync.store import upkeep
from testio_sync.store.writer import StoreWriter
from testio_sync.sync import phases
from testio_sync.sync.context import ProgressSink, RunContext, null_progress
from testio_sync.sync.pipeline import ProductPipeline
from testio_sync.sync.types import (
    SyncPhase,
    SyncRequest,
    SyncResult,
    SyncStatus,
)

logger = logging.getLogger("testio_sync.sync")


async def run_sync(
    request: SyncRequest,
    *,
    run_id: str,
    client: ApiClient,
    settings: Settings,
    sink: ProgressSink = null_progress,
    now: Callable[[], datetime] = utc_now,
    should_stop: Callable[[], bool] = lambda: False,
    warnings: list[str] | None = None,
) -> SyncResult:
    """Run the phases of ``request`` in order and return the outcome.

    Never raises for API or store failures: they end up in ``result.errors``
    and the status (``failed`` when the run could not do its job, ``partial``
    when it finished with errors).
    """
    started = time.monotonic()
    result = SyncResult(
        run_id=run_id,
        status=SyncStatus.RUNNING,
        trigger=request.trigger,
        started_at=now(),
        warnings=list(warnings or []),
    )
    writer = StoreWriter()
    ctx = RunContext(
        request=request,
        result=result,
        client=client,
        repos=Repositories(client, settings, now=now, write=writer.call),
        settings=settings,
        # Progress rows go behind the saves on the writer thread: written from the loop
        # they wait for each save's write lock, and every request waits with them.
        sink=lambda progress: writer.post(sink, progress),
        now=now,
        should_stop=should_stop,
        write=writer.call,
    )
    fatal: str | None = None
    rest = [p for p in request.phases if p != SyncPhase.PRODUCTS]
    pipeline = ProductPipeline(ctx, rest) if rest else None
    try:
        await phases.resolve_scope(ctx)
        if SyncPhase.PRODUCTS in request.phases:
            if pipeline is not None:
                pipeline.start_walks()  # stored products: no need to wait for the list
            await _timed(ctx, [SyncPhase.PRODUCTS], lambda: phases.run_products(ctx))
        if pipeline is not None:
            await _timed(ctx, rest, lambda: phases.run_product_pipeline(ctx, rest, pipeline))
    except TestioSyncError as exc:  # a refused token, a stop request, a store failure
        fatal = str(exc)
    finally:
        if pipeline is not None:
            pipeline.close()
        await _tidy(writer)
        await asyncio.to_thread(writer.close)
    if fatal and not any(error.endswith(fatal) for error in result.errors):
        result.errors.append(fatal)  # once: a phase may have recorded it with its object
    result.status = _status(ctx, fatal)
    if ctx.api_failures and not ctx.api_successes:
        result.phases_completed.clear()  # no call succeeded: no phase really completed
    result.finished_at = now()
    result.duration_seconds = time.monotonic() - started
    ctx.emit(phase=None, message="finished")
    return result


async def _tidy(writer: StoreWriter) -> None:
    """Refresh the statistics of the tables the run rewrote; a failure only warns."""
    try:
        await writer.call(upkeep.tidy)
    except StoreError as exc:
        logger.warning("%s", exc)


async def _timed(
    ctx: RunContext, done: list[SyncPhase], work: Callable[[], Awaitable[None]]
) -> None:
    """Run one step of the run, then mark its phases completed (in order) and log the time."""
    ctx.raise_if_stopped()
    started = time.monotonic()
    ctx.emit(phase=done[0].value, products_done=0, products_total=len(ctx.product_ids))
    await work()
    ctx.result.phases_completed.extend(done)
    names = ", ".join(p.value for p in done)
    logger.info("run %s: %s done in %.2fs", ctx.result.run_id, names, time.monotonic() - started)


def _status(ctx: RunContext, fatal: str | None) -> SyncStatus:
    if fatal:
        return SyncStatus.FAILED
    if ctx.result.errors:
        # Every API call failed: nothing was done, so it is not even partial.
        if ctx.api_failures and not ctx.api_successes:
            return SyncStatus.FAILED
        return SyncStatus.PARTIAL
    return SyncStatus.SUCCEEDED
