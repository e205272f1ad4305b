"""Read-through for the MCP read tools: refresh what an answer shows before it is read.

The read tools answer from the local mirror; ``ReadThrough`` first sends the rows
they are about to show through the repositories' entry points
(``get_*_cached_or_refresh``, ``refresh_tests``, ``refresh_bugs``), which fetch
only what is missing or older than the TTL and never an archived or cancelled
test again. A refresh never fails a read: what it could not do becomes a line
in the answer's ``warnings``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, cast

from testio_sync.api.client import ApiClient
from testio_sync.dates import utc_now
from testio_sync.errors import ApiError, ConfigError
from testio_sync.repositories import EntityLocks, Repositories
from testio_sync.settings import Settings
from testio_sync.store import queries

logger = logging.getLogger(__name__)

MAX_NAMED = 10  # ids named in one warning


class ReadThrough:
    """Refreshes what a read tool is about to show, through the repositories' entry points.

    Missing or stale rows are fetched (mutable tests and their bugs after the TTL;
    archived and cancelled ones never again). A fetch that fails, or cannot run
    without a token, never fails the read: the answer shows the stored rows, says
    so in ``warnings``, and its ``data_as_of`` tells their age.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        locks: EntityLocks | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.locks = locks or EntityLocks()
        self.now = now

    async def _run(self, work: Callable[[Repositories], Awaitable[list[str]]]) -> list[str]:
        client = _ClientOnDemand(self.settings)
        try:
            return await work(self._repos(cast(ApiClient, client)))
        except ConfigError:
            return ["No API token: answered from the mirror as stored."]
        except ApiError as exc:
            logger.warning("read-through refresh failed: %s", exc)
            return [f"Answered from the mirror as stored: {str(exc).rstrip('.')}."]
        finally:
            await client.aclose()

    def _repos(self, client: ApiClient) -> Repositories:
        return Repositories(client, self.settings, locks=self.locks, now=self.now)

    async def products(self) -> list[str]:
        """Every stored product, refetched when stale (a product the API lost stays)."""
        synced = await asyncio.to_thread(queries.product_sync_times)

        async def work(repos: Repositories) -> list[str]:
            due = [pid for pid, at in synced.items() if repos.is_stale(at)]
            await asyncio.gather(*(repos.get_product_cached_or_refresh(pid) for pid in due))
            return []

        return await self._run(work)

    async def tests(self, test_ids: Sequence[int]) -> list[str]:
        """These tests, refetched when missing or mutable and stale."""
        if not test_ids:
            return []

        async def work(repos: Repositories) -> list[str]:
            report = await repos.refresh_tests(test_ids)
            return _failed("tests", report.failed)

        return await self._run(work)

    async def test_with_bugs(self, test_id: int) -> list[str]:
        """One test and its bugs, each through its ``get_*_cached_or_refresh``."""

        async def work(repos: Repositories) -> list[str]:
            if await repos.get_tests_cached_or_refresh([test_id]):
                await repos.get_bugs_cached_or_refresh([test_id])
            return []

        return await self._run(work)

    async def bugs(
        self, test_ids: Sequence[int] | None, product_ids: Sequence[int] | None
    ) -> list[str]:
        """The stale bugs of the given tests, or of every test of the given products."""
        scope = list(test_ids or [])
        for pid in [] if test_ids else product_ids or []:  # the answer keeps both filters
            scope += await asyncio.to_thread(queries.stored_test_ids, pid)
        if not scope:
            return []

        async def work(repos: Repositories) -> list[str]:
            report = await repos.refresh_bugs(sorted(set(scope)))
            return _failed("bugs of tests", report.failed)

        return await self._run(work)


class _ClientOnDemand:
    """The API client, built at the first fetch: most reads find their rows fresh.

    Without a token, only an actual fetch fails (``ConfigError``).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: ApiClient | None = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = ApiClient.from_settings(self._settings)
        return getattr(self._client, name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _failed(what: str, failed: dict[int, str]) -> list[str]:
    if not failed:
        return []
    return [
        f"The {what} {', '.join(map(str, sorted(failed)[:MAX_NAMED]))} could not be "
        "refreshed; their stored rows are shown."
    ]


def with_warnings(data: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The answer, with ``warnings`` when a refresh fell short."""
    return {**data, "warnings": warnings} if warnings else data
