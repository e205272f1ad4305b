"""The TestIO Customer API client: endpoints, retry policy, test pages and bug batches.

Everything that talks HTTP lives here; nothing here touches the store.
"""

from testio_sync.api.batches import BugBatchResult, fetch_bugs_batched
from testio_sync.api.client import ApiClient
from testio_sync.api.pages import (
    BrokenSlot,
    PageLoopError,
    TestPage,
    TestPageWalker,
    UnreadablePagesError,
    iter_test_pages,
)
from testio_sync.api.retry import Decision, RetryPolicy, classify, retry_after_seconds

__all__ = [
    "ApiClient",
    "BrokenSlot",
    "BugBatchResult",
    "Decision",
    "PageLoopError",
    "RetryPolicy",
    "TestPage",
    "TestPageWalker",
    "UnreadablePagesError",
    "classify",
    "fetch_bugs_batched",
    "iter_test_pages",
    "retry_after_seconds",
]
