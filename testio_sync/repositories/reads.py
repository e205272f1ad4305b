"""Read-through reads: answer from the store, fetch from the API only when missing or stale.

Callers never think about caching: ``get_*_cached_or_refresh`` returns rows.
Rules: tests in ``archived``/``cancelled`` are immutable and served from the
store forever (their bugs too, once fetched after they became immutable);
everything else is refetched when older than the TTL; a failed fetch never
marks anything fresh; concurrent refreshes of one entity in this process share
one fetch (an asyncio lock per entity key). Repositories never take the file
lock and never call the SyncService.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from testio_sync.api.batches import fetch_bugs_batched
from testio_sync.api.client import ApiClient
from testio_sync.dates import utc_now
from testio_sync.errors import AccessError, ApiError, AuthError
from testio_sync.repositories.bug_saves import GroupedBugSaves
from testio_sync.repositories.entity_locks import EntityLocks
from testio_sync.settings import Settings
from testio_sync.store import queries, save
from testio_sync.store.models import Bug, ExploratoryTest, Feature, Product, database
from testio_sync.store.normalize import FINAL_STATUSES, product_sections
from testio_sync.store.writer import direct_call

logger = logging.getLogger(__name__)


@dataclass
class RefreshReport:
    """What one refresh fetched and what failed (failures are not marked fresh)."""

    refreshed: int = 0  # entities refetched (features, tests, or tests whose bugs were)
    saved: int = 0  # rows written (features, tests, bugs)
    failed: dict[int, str] = field(default_factory=dict)


async def fetch_product_features(client: ApiClient, product: dict[str, Any]) -> list[dict]:
    """All features of a product, deduplicated by id, each with its ``section_ids``.

    Sectioned products answer 422 on the plain endpoint, so they are read one
    section at a time; a feature listed in several sections is kept once.
    """
    pid = int(product["id"])
    if not product_sections(product)[0]:
        try:
            features = await client.fetch_features(pid)
            return [{**f, "section_ids": []} for f in features]
        except ApiError as exc:
            if exc.status != 422:
                raise
            product = await client.fetch_product(pid)  # sections appeared since last seen
    merged: dict[int, dict[str, Any]] = {}
    sections = [int(s) for s in product_sections(product)[1]]
    answers = await asyncio.gather(*(client.fetch_section_features(pid, s) for s in sections))
    for section_id, features in zip(sections, answers, strict=True):
        for feature in features:
            entry = merged.setdefault(int(feature["id"]), {**feature, "section_ids": []})
            entry["section_ids"].append(section_id)
    return list(merged.values())


class Repositories:
    """Store-first access to products, features, tests and bugs."""

    def __init__(
        self,
        client: ApiClient,
        settings: Settings,
        *,
        locks: EntityLocks | None = None,
        now: Callable[[], datetime] = utc_now,
        write: Callable[..., Awaitable[Any]] = direct_call,
    ) -> None:
        self.client = client
        self.write = write  # how store writes run: in place, or on a sync's writer thread
        self._bug_saves = GroupedBugSaves(write)  # bug lists waiting for the writer go together
        self.settings = settings
        self.locks = locks or EntityLocks()
        self.now = now
        self._reject_reasons: dict[str, str] | None = None
        self._reasons_lock = asyncio.Lock()

    def is_stale(self, synced_at: datetime | None) -> bool:
        """Never fetched, or fetched longer than the cache TTL ago."""
        if synced_at is None:
            return True
        return self.now() - synced_at > timedelta(seconds=self.settings.cache_ttl_s)

    # -- products ----------------------------------------------------------------

    async def get_product_cached_or_refresh(self, product_id: int) -> Product:
        """The stored product, refetched when missing or stale.

        Raises:
            AccessError: the API does not know the product (and the store does not either).
        """
        with database.connection_context():
            row = Product.get_or_none(Product.id == product_id)
        if row is not None and not self.is_stale(row.synced_at):
            return row
        async with self.locks.hold(("product", product_id)):
            try:
                raw = await self.client.fetch_product(product_id)
            except AccessError:
                if row is not None:
                    return row
                raise
            save.save_products([raw], now=self.now())
        with database.connection_context():
            return Product.get(Product.id == product_id)

    # -- features ----------------------------------------------------------------

    async def refresh_features(self, product_id: int, *, force: bool = False) -> RefreshReport:
        """Refetch a product's features when forced or older than the TTL."""
        report = RefreshReport()
        async with self.locks.hold(("features", product_id)):
            with database.connection_context():
                product = Product.get_or_none(Product.id == product_id)
            if product is None:
                product = await self.get_product_cached_or_refresh(product_id)
            if not force and not self.is_stale(product.features_synced_at):
                return report
            features = await fetch_product_features(self.client, product.raw)
            counts = save.save_features(product_id, features, now=self.now())
            report.refreshed = 1
            report.saved = len(features)
            logger.debug("features of product %s: %s", product_id, counts)
        return report

    async def get_features_cached_or_refresh(self, product_id: int) -> list[Feature]:
        await self.refresh_features(product_id)
        with database.connection_context():
            return list(Feature.select().where(Feature.product == product_id).order_by(Feature.id))

    # -- tests -------------------------------------------------------------------

    def _test_is_fresh(self, test: ExploratoryTest) -> bool:
        return test.status in FINAL_STATUSES or not self.is_stale(test.synced_at)

    async def get_tests_cached_or_refresh(self, test_ids: Sequence[int]) -> list[ExploratoryTest]:
        """The tests, each refetched when missing, mutable and stale; failures keep old rows."""
        report = await self.refresh_tests(test_ids)
        if report.failed:
            logger.warning("could not refresh %d tests", len(report.failed))
        with database.connection_context():
            return list(ExploratoryTest.select().where(ExploratoryTest.id.in_(list(test_ids))))

    async def refresh_tests(self, test_ids: Sequence[int]) -> RefreshReport:
        report = RefreshReport()
        with database.connection_context():
            stored = {
                t.id: t
                for t in ExploratoryTest.select().where(ExploratoryTest.id.in_(list(test_ids)))
            }
        wanted = [
            tid for tid in test_ids if tid not in stored or not self._test_is_fresh(stored[tid])
        ]

        async def refresh_one(tid: int) -> None:
            async with self.locks.hold(("test", tid)):
                with database.connection_context():
                    row = ExploratoryTest.get_or_none(ExploratoryTest.id == tid)
                if row is not None and self._test_is_fresh(row):
                    return
                try:
                    raw = await self.client.fetch_test(tid)
                except AuthError:
                    raise
                except ApiError as exc:
                    report.failed[tid] = str(exc)
                    return
                product_id = int(
                    (raw.get("product") or {}).get("id") or (row.product_id if row else 0)
                )
                if not product_id:
                    report.failed[tid] = f"test {tid} names no product"
                    return
                await self.get_product_cached_or_refresh(product_id)
                save.save_tests(product_id, [raw], now=self.now())
                report.refreshed += 1
                report.saved += 1

        await asyncio.gather(*(refresh_one(t) for t in wanted))
        return report

    # -- bugs --------------------------------------------------------------------

    async def reject_reasons(self) -> dict[str, str]:
        """Default comment -> reason key, fetched once per repository."""
        async with self._reasons_lock:
            if self._reject_reasons is None:
                try:
                    reasons = await self.client.fetch_reject_reasons()
                except AuthError:
                    raise
                except ApiError as exc:
                    logger.warning("reject reasons unavailable: %s", exc)
                    return {}
                self._reject_reasons = {
                    r["default_comment"]: r["key"] for r in reasons if r.get("default_comment")
                }
            return self._reject_reasons

    def _bugs_due(self, test_ids: Sequence[int]) -> list[int]:
        """The tests whose bug lists are stale, by the store's one rule (``bugs_due``)."""
        due = queries.tests_needing_bugs(
            product_ids=None,
            since=None,
            ttl_s=self.settings.cache_ttl_s,
            now=self.now(),
            test_ids=test_ids,
        )
        return sorted(due)

    async def refresh_bugs(
        self,
        test_ids: Sequence[int],
        *,
        force: bool = False,
        fetch_limit: asyncio.Semaphore | None = None,
    ) -> RefreshReport:
        """Refetch the bugs of the given tests that are stale (all of them when forced).

        ``fetch_limit`` is held around the API call only (a sync bounds its bug
        requests with it), not around the store write that follows.
        """
        report = RefreshReport()
        if force:
            with database.connection_context():
                rows = ExploratoryTest.select(ExploratoryTest.id).where(
                    ExploratoryTest.id.in_(list(test_ids))
                )
                wanted = sorted(t.id for t in rows)
        else:
            wanted = self._bugs_due(test_ids)
        if not wanted:
            return report
        async with contextlib.AsyncExitStack() as stack:
            for tid in wanted:  # sorted order: no two callers can deadlock
                await stack.enter_async_context(self.locks.hold(("bugs", tid)))
            if not force:  # another caller may have refreshed them while we waited
                wanted = self._bugs_due(wanted)
            if not wanted:
                return report
            async with fetch_limit or contextlib.nullcontext():
                batch = await fetch_bugs_batched(self.client, wanted)
            ok = [tid for tid in wanted if tid not in batch.failed]
            if ok:
                # Needed only to name rejection reasons when saving: fetched once,
                # while the first batches are already on the wire.
                reasons = await self.reject_reasons()
                report.saved = await self._bug_saves.save(
                    ok,
                    {tid: batch.bugs_by_test.get(tid, []) for tid in ok},
                    now=self.now(),
                    reject_reasons=reasons,
                )
            report.refreshed = len(ok)
            report.failed.update(batch.failed)
        return report

    async def get_bugs_cached_or_refresh(self, test_ids: Sequence[int]) -> list[Bug]:
        """Bugs of the tests; stale ones are refetched first, failures served as stored."""
        report = await self.refresh_bugs(test_ids)
        if report.failed:
            logger.warning("could not refresh bugs of %d tests", len(report.failed))
        with database.connection_context():
            return list(Bug.select().where(Bug.test.in_(list(test_ids))))
