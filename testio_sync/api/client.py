"""The async TestIO Customer API client: one method per endpoint, envelope unwrapped.

All requests of one client share one budget: at most ``max_concurrent`` in flight,
and one rate-limit gate, because TestIO limits per IP: a 429 pauses every request
of the client, not only the one that got it. What each answer means lives in
``retry.py``; this module only acts on it and translates httpx errors into the
package's ``ApiError`` tree.

The token lives only in the ``Authorization`` header. Error messages, log lines
and reprs name the request path, never the URL or headers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import orjson

from testio_sync.api.retry import Decision, RetryPolicy, classify, retry_after_seconds
from testio_sync.api.slots import RequestBudget, shared_budget
from testio_sync.errors import (
    AccessError,
    ApiError,
    AuthError,
    BadResponseError,
    RetryableApiError,
)
from testio_sync.settings import Secret, Settings, scrub_environments

__all__ = ["ApiClient"]

logger = logging.getLogger(__name__)


class _BadBody(ValueError):
    """The body was not JSON, not an object, or lacked its envelope key."""


class ApiClient:
    """Async client: one method per endpoint, envelope unwrapped, one shared request budget.

    Use as ``async with ApiClient(...) as client:``. Every ``fetch_*`` method raises
    ``AuthError`` (401), ``AccessError`` (403/404), ``RetryableApiError`` (transient
    failures past the retry policy, and 524 at once), ``BadResponseError`` (a broken
    body past the retry policy) or ``ApiError`` (400, 422, a 500 that repeated).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_concurrent: int = 10,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        secret = token if isinstance(token, Secret) else Secret(token)
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.host = parts.hostname or self.base_url  # for messages: never user info or a path
        if parts.port:
            self.host += f":{parts.port}"
        self.max_concurrent = max_concurrent
        self.retry = retry or RetryPolicy()
        self.request_count = 0
        if transport is None:
            # Connection-level retries only (a dropped keep-alive socket); status and
            # timeout retries are ours. Pool sized to the semaphore, so no request
            # ever waits for a connection while holding a slot.
            transport = httpx.AsyncHTTPTransport(
                retries=1,
                # Plain HTTP (the simulator) needs no TLS context; building one loads
                # the CA bundle (~20 ms a client). Redirects are not followed.
                verify=not self.base_url.startswith("http://"),
                limits=httpx.Limits(
                    max_connections=max_concurrent, max_keepalive_connections=max_concurrent
                ),
            )
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers={"Authorization": f"Token {secret.reveal()}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        self._budget: RequestBudget | None = None  # the process's, found on first request
        # Once the token is refused, every later or queued request fails without sending:
        # a revoked token must stop a sync at once, not after a wave of 401s.
        self._auth_failed = False

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> ApiClient:
        """Build a client from ``Settings``; keyword arguments override them.

        ``max_retries`` counts retries, so the policy makes one attempt more.

        Raises:
            ConfigError: no token is configured.
        """
        options: dict[str, Any] = {
            "max_concurrent": settings.max_concurrent_requests,
            "timeout_s": settings.http_timeout_s,
            "retry": RetryPolicy(
                max_attempts=max(1, settings.max_retries + 1),
                max_wait_s=settings.retry_max_wait_s,
            ),
        }
        options.update(kw)
        base_url = options.pop("base_url", settings.api_base_url)
        token = options.pop("token", None) or settings.require_token()
        return cls(base_url, token, **options)

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r}, max_concurrent={self.max_concurrent})"

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._http.aclose()

    # -- endpoints ---------------------------------------------------------------

    async def fetch_products(self) -> list[dict[str, Any]]:
        """All products the token can see (not paginated)."""
        return await self._get_list("products", "products")

    async def fetch_product(self, product_id: int) -> dict[str, Any]:
        """One product."""
        return await self._get_object(f"products/{product_id}", "product")

    async def fetch_features(self, product_id: int) -> list[dict[str, Any]]:
        """Features of a product without sections; a sectioned one raises ApiError 422."""
        return await self._get_list(f"products/{product_id}/features", "features")

    async def fetch_section_features(
        self, product_id: int, section_id: int
    ) -> list[dict[str, Any]]:
        """Features of one section of a sectioned product."""
        path = f"products/{product_id}/sections/{section_id}/features"
        return await self._get_list(path, "features")

    async def fetch_test_page(
        self, product_id: int, page: int, per_page: int = 25
    ) -> list[dict[str, Any]]:
        """One page (1-based) of tests, newest ``end_at`` first, credentials stripped."""
        tests = await self._get_list(
            f"products/{product_id}/exploratory_tests",
            "exploratory_tests",
            params={"page": page, "per_page": per_page},
        )
        return scrub_environments(tests)

    async def fetch_newest_tests(self, product_id: int) -> list[dict[str, Any]]:
        """The newest 150 tests in one answer: the list asked for without ``page``.

        Same order as the pages (``end_at`` descending); a shorter answer is the whole
        list. One broken test among them fails it with HTTP 500, like a page.
        """
        tests = await self._get_list(
            f"products/{product_id}/exploratory_tests", "exploratory_tests"
        )
        return scrub_environments(tests)

    async def fetch_test(self, test_id: int) -> dict[str, Any]:
        """One test in full detail, credentials stripped."""
        test = await self._get_object(f"exploratory_tests/{test_id}", "exploratory_test")
        return scrub_environments(test)

    async def fetch_bugs(self, test_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Every bug of the given tests in one call (split large batches: 524)."""
        if not test_ids:
            return []  # an empty filter would be ignored by the server: all bugs
        ids = ",".join(str(int(i)) for i in test_ids)
        return await self._get_list("bugs", "bugs", params={"filter_test_cycle_ids": ids})

    async def fetch_bug(self, bug_id: int) -> dict[str, Any]:
        """One bug."""
        return await self._get_object(f"bugs/{bug_id}", "bug")

    async def fetch_reject_reasons(self) -> list[dict[str, Any]]:
        """The rejection reasons with their default comments."""
        return await self._get_list("bugs/reject_reasons", "reject_reasons")

    # -- machinery ---------------------------------------------------------------

    async def _get_list(
        self, path: str, envelope: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], await self._get(path, envelope, list, params))

    async def _get_object(self, path: str, envelope: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._get(path, envelope, dict, None))

    async def _get(
        self, path: str, envelope: str, kind: type, params: dict[str, Any] | None
    ) -> Any:
        """GET ``path`` under the shared budget, retrying as the policy says."""
        policy = self.retry
        failures = 0  # attempts that count against max_attempts
        throttled = 0
        while True:
            outcome = await self._send(path, params)
            if outcome is None:
                raise _token_refused(path)
            decision = classify(outcome)
            if decision is Decision.OK:
                assert isinstance(outcome, httpx.Response)
                try:
                    return _unwrap(outcome, envelope, kind)
                except _BadBody as exc:
                    outcome, decision = exc, Decision.RETRY
            if decision is Decision.THROTTLE:
                assert isinstance(outcome, httpx.Response)
                throttled += 1
                if throttled > policy.max_throttled:
                    raise RetryableApiError(
                        f"The TestIO API kept rate-limiting {path} (HTTP 429); try again later",
                        status=429,
                        path=path,
                    )
                wait = policy.throttle_s(retry_after_seconds(outcome), throttled)
                self._shared().pause(wait)
                logger.warning("Rate limited on %s; pausing all requests for %.2fs", path, wait)
                continue
            failures += 1
            if decision is Decision.RETRY and failures < policy.max_attempts:
                delay = policy.backoff_s(failures)
                logger.info(
                    "Retrying %s in %.2fs (%s, attempt %d)", path, delay, _what(outcome), failures
                )
                await asyncio.sleep(delay)
                continue
            if decision is Decision.RETRY_ONCE and failures < min(2, policy.max_attempts):
                # A repeated 500 is almost always a broken record, not load: retry once,
                # quickly, and leave the rest to the caller (the page walker shrinks).
                await asyncio.sleep(policy.base_delay_s)
                continue
            error = _error_for(decision, outcome, path, failures, host=self.host)
            if isinstance(error, AuthError):
                self._auth_failed = True
            raise error

    async def _send(
        self, path: str, params: dict[str, Any] | None
    ) -> httpx.Response | Exception | None:
        """One attempt under the semaphore and the 429 gate; errors are returned, not raised.

        Returns None, sending nothing, once the token has been refused.
        """
        budget = self._shared()
        await budget.wait_for_gate()
        async with budget.slots.slot():
            # The gate may have closed while this request queued for a slot.
            await budget.wait_for_gate()
            if self._auth_failed:
                return None
            self.request_count += 1
            try:
                return await self._http.get(path, params=params)
            except httpx.HTTPError as exc:
                return exc

    def _shared(self) -> RequestBudget:
        """The request budget of this process (event loop), shared with its other clients."""
        if self._budget is None:
            self._budget = shared_budget(self.max_concurrent)
        return self._budget


def _unwrap(response: httpx.Response, envelope: str, kind: type) -> Any:
    try:
        body = orjson.loads(response.content)  # ~2x the stdlib on bug lists
    except orjson.JSONDecodeError as exc:
        raise _BadBody("not JSON") from exc
    if not isinstance(body, dict) or envelope not in body:
        raise _BadBody(f"no {envelope!r} key")
    value = body[envelope]
    if not isinstance(value, kind):
        raise _BadBody(f"{envelope!r} is not a JSON {'array' if kind is list else 'object'}")
    if kind is list and not all(isinstance(item, dict) for item in value):
        raise _BadBody(f"{envelope!r} holds something other than objects")
    return value


_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def _token_refused(path: str) -> AuthError:
    return AuthError(
        "The TestIO API refused the token (HTTP 401); check TESTIO_CUSTOMER_API_TOKEN",
        status=401,
        path=path,
    )


def _what(outcome: httpx.Response | Exception) -> str:
    """A short, secret-free description of a failed attempt (``ConnectError: ...``)."""
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    if isinstance(outcome, _BadBody):
        return f"broken body: {outcome}"
    detail = _ERRNO.sub("", str(outcome)).strip()
    if not detail or len(detail) > 100:
        return type(outcome).__name__
    return f"{type(outcome).__name__}: {detail[0].lower()}{detail[1:]}"


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def _error_for(
    decision: Decision,
    outcome: httpx.Response | Exception,
    path: str,
    attempts: int,
    *,
    host: str = "",
) -> ApiError:
    """The package error for a final outcome; built from the host and path, never the URL."""
    status = outcome.status_code if isinstance(outcome, httpx.Response) else None
    what = _what(outcome)
    error: ApiError
    if status == 401:
        error = _token_refused(path)
    elif decision is Decision.SKIP:
        reason = "gives no access to" if status == 403 else "does not know"
        error = AccessError(
            f"The TestIO API {reason} {path} (HTTP {status})", status=status, path=path
        )
    elif decision is Decision.SPLIT:
        error = RetryableApiError(
            f"The TestIO API timed out building {path} (HTTP 524); ask for less",
            status=status,
            path=path,
        )
    elif isinstance(outcome, _BadBody):
        error = BadResponseError(
            f"The TestIO API at {host} sent a broken answer for {path} "
            f"({what}; {_attempts(attempts)})",
            status=None,
            path=path,
        )
    elif decision is Decision.RETRY:
        error = RetryableApiError(
            f"Cannot reach the TestIO API at {host} for {path} ({what}; {_attempts(attempts)})"
            if isinstance(outcome, httpx.TransportError)
            else f"The TestIO API at {host} failed {path} ({what}; {_attempts(attempts)})",
            status=status,
            path=path,
        )
    else:
        error = ApiError(f"The TestIO API refused {path} ({what})", status=status, path=path)
    if isinstance(outcome, Exception):
        error.__cause__ = outcome
    return error
