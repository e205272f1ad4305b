"""testio-sync: a local SQLite mirror of the TestIO Customer API, kept fresh by one sync.

The public API, on one screen::

    from testio_sync import SyncService, SyncPhase, SyncScope, SyncOptions

    service = SyncService()                       # settings from TESTIO_* variables
    handle = service.execute_sync(scope=SyncScope(product_ids=(598,)))
    result = handle.wait(timeout_s=120)           # a SyncResult

The layers, top to bottom; imports only point down (``tests/test_layout.py`` holds it)::

    cli/  mcp_server/          entry points: parse, call one function, render
    service.py  insights/      enqueue and wait on syncs | the read side (report, analytics, search)
    tasks/                     the huey queue, the worker's jobs, the periodic sync
    sync/                      the engine: phases, page walks, the run lock, run records
    repositories/              read-through reads and their per-entity locks
    api/  store/               the HTTP client | the SQLite store (never each other)
    settings.py  dates.py  errors.py

``simulator/`` stands apart: it implements the API contract without importing the rest.
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
