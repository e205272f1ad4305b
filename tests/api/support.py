"""Helpers shared by the API tests: run a coroutine, build a client on a MockTransport."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx

from testio_sync.api import ApiClient, RetryPolicy

T = TypeVar("T")

BASE_URL = "https://api.test.invalid/customer/v2"
TOKEN = "sekret-token-1234567890"
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.004, max_wait_s=0.05)

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to the end: pytest-asyncio is not part of the stack."""
    return asyncio.run(coro)


def mock_client(handler: Handler, **kw: Any) -> ApiClient:
    """A client whose every request goes to ``handler``, with tiny retry delays."""
    kw.setdefault("retry", FAST)
    return ApiClient(BASE_URL, TOKEN, transport=httpx.MockTransport(handler), **kw)


def path_of(request: httpx.Request) -> str:
    """The request path relative to the API base, e.g. ``products/5``."""
    return request.url.path.removeprefix("/customer/v2/")


def envelope(key: str, value: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={key: value}, headers=headers)
