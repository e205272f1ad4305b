"""The state one run carries through its phases, and how phases report.

Phases read the request and scope from here and add to the result and the
live progress; the sink turns progress into a row update or a progress bar.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from testio_sync.api.client import ApiClient
from testio_sync.dates import utc_now
from testio_sync.errors import TestioSyncError
from testio_sync.repositories import Repositories
from testio_sync.settings import Settings
from testio_sync.store.writer import direct_call
from testio_sync.sync.types import SyncProgress, SyncRequest, SyncResult

logger = logging.getLogger("testio_sync.sync")

ProgressSink = Callable[[SyncProgress], None]


def null_progress(progress: SyncProgress) -> None:
    """The default sink: progress goes nowhere."""


@dataclass
class RunContext:
    """Everything a phase needs; phases add to ``result`` and ``progress``."""

    request: SyncRequest
    result: SyncResult
    client: ApiClient
    repos: Repositories
    settings: Settings
    sink: ProgressSink = null_progress
    now: Callable[[], datetime] = utc_now
    should_stop: Callable[[], bool] = lambda: False
    write: Callable[..., Awaitable[Any]] = direct_call  # store writes (a writer thread)
    progress: SyncProgress = field(default_factory=SyncProgress)
    product_ids: list[int] = field(default_factory=list)  # in scope, set by PRODUCTS
    api_failures: int = 0
    api_successes: int = 0

    def emit(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.progress, key, value)
        self.sink(SyncProgress(**self.progress.to_dict()))

    def raise_if_stopped(self) -> None:
        """Raises ``StopRequested`` when the run was asked to stop (checked between requests)."""
        if self.should_stop():
            raise StopRequested("The sync was stopped before it finished.")

    def warn(self, message: str) -> None:
        logger.warning(message)
        self.result.warnings.append(message)

    def error(self, message: str) -> None:
        logger.error(message)
        self.result.errors.append(message)

    def product_stats(self, product_id: int) -> dict[str, int]:
        return self.result.per_product.setdefault(
            str(product_id), {"tests_new": 0, "tests_updated": 0, "pages": 0}
        )


class StopRequested(TestioSyncError):
    """The run was asked to stop (Ctrl-C in the CLI, or the lock was reclaimed)."""
