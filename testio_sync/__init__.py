"""testio-sync: a local SQLite mirror of the TestIO Customer API, kept fresh by one sync.

The public API, on one screen::

    from testio_sync import SyncService, SyncPhase, SyncScope, SyncOptions

    service = SyncService()                       # settings from TESTIO_* variables
    handle = service.execute_sync(scope=SyncScope(product_ids=(598,)))
    result = handle.wait(timeout_s=120)           # a SyncResult
"""

from testio_sync.errors import (
    AccessError,
    ApiError,
    AuthError,
    BadResponseError,
    ConfigError,
    RetryableApiError,
    StoreError,
    SyncError,
    SyncFailedError,
    SyncLockedError,
    TestioSyncError,
    UsageError,
)
from testio_sync.settings import Settings
from testio_sync.sync.types import (
    SyncOptions,
    SyncPhase,
    SyncProgress,
    SyncRequest,
    SyncResult,
    SyncScope,
    SyncStatus,
    SyncTrigger,
)

__version__ = "0.1.0"

_LAZY = {"SyncHandle", "SyncService", "SyncWaitTimeout"}


def __getattr__(name: str) -> object:
    # The service pulls in the huey queue, which opens its file: load it on first
    # use, so that importing a light module (the simulator, dates) stays side-effect free.
    if name in _LAZY:
        from testio_sync import service

        return getattr(service, name)
    raise AttributeError(f"module 'testio_sync' has no attribute {name!r}")


__all__ = [
    "AccessError",
    "ApiError",
    "AuthError",
    "BadResponseError",
    "ConfigError",
    "RetryableApiError",
    "Settings",
    "StoreError",
    "SyncError",
    "SyncFailedError",
    "SyncHandle",
    "SyncLockedError",
    "SyncOptions",
    "SyncPhase",
    "SyncProgress",
    "SyncRequest",
    "SyncResult",
    "SyncScope",
    "SyncService",
    "SyncStatus",
    "SyncTrigger",
    "SyncWaitTimeout",
    "TestioSyncError",
    "UsageError",
    "__version__",
]
