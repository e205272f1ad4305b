"""The exception tree of testio-sync, grouped by what the caller does about it.

    TestioSyncError                 str(e) is a user-ready sentence with no secret in it
    ├── ConfigError                 missing token, bad setting, unwritable data dir
    ├── UsageError (.param, .hint)  a request that contradicts itself or names bad values
    │   └── UnknownProductsError    product ids neither the store nor the API knows
    ├── ApiError (.status, .path)
    │   ├── AuthError               401: fatal, stop the whole sync
    │   ├── AccessError             403/404: skip that object, warn
    │   ├── RetryableApiError       429/5xx/524/timeouts after the retry policy gave up
    │   └── BadResponseError        body is not JSON or lacks its envelope key
    ├── SyncError
    │   └── SyncLockedError (.holder)   the file lock wait timed out
    └── StoreError                  database missing, schema too new, disk full

Foreign errors (httpx, peewee, sqlite3) are translated at the boundary of the
package that meets them, with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class TestioSyncError(Exception):
    """Base of every error this package raises on purpose."""

    __test__ = False  # not a pytest test class


class ConfigError(TestioSyncError):
    """A setting is missing or unusable."""


class UsageError(TestioSyncError):
    """A request names bad values or contradicts itself; nothing was changed.

    The message is neutral: it names no flag, tool or tool parameter. ``param`` is
    the argument at fault by its library name (``start_date``) and ``hint`` what
    would help (one of ``HINTS``); each entry point words both in its own terms
    (``--start-date`` and ``testio-sync status`` on the command line,
    ``start_date`` and ``list_products`` over MCP).
    """

    HINTS = ("products", "tests", "test")  # see stored products / tests of a product / a test

    def __init__(self, message: str, *, param: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None and hint not in self.HINTS:
            raise ValueError(f"unknown hint {hint!r}")
        self.param = param
        self.hint = hint

    def worded(self, param_name: Callable[[str], str], hints: Mapping[str, str]) -> str:
        """The message in one interface's words: its name of ``param`` first, its hint last."""
        text = str(self).rstrip(".")
        if self.param:
            text = f"{param_name(self.param)}: {text}"
        return f"{text}; {hints[self.hint]}" if self.hint else text


class UnknownProductsError(UsageError):
    """Product ids that no known product has; the same words before and during a run."""

    PREFIX = "Unknown product id(s): "

    def __init__(self, product_ids: list[int] | tuple[int, ...]) -> None:
        self.product_ids = tuple(product_ids)
        super().__init__(
            f"{self.PREFIX}{', '.join(map(str, self.product_ids))}",
            param="product_ids",
            hint="products",
        )


class ApiError(TestioSyncError):
    """The TestIO API answered with an error or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path


class AuthError(ApiError):
    """The token was refused (HTTP 401); retrying cannot help."""


class AccessError(ApiError):
    """One object is forbidden or unknown (HTTP 403/404); the rest of a sync goes on."""


class RetryableApiError(ApiError):
    """A transient failure (429, 5xx, 524, timeout) outlasted the retry policy."""


class BadResponseError(ApiError):
    """The body was not JSON or lacked its envelope key; nothing of it is stored."""


class SyncError(TestioSyncError):
    """A sync could not run or did not succeed."""


class SyncLockedError(SyncError):
    """Another process held the sync lock for longer than the wait allowed."""

    def __init__(self, message: str, *, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class StoreError(TestioSyncError):
    """The local database is missing, too new, or cannot be written."""
