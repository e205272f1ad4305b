"""ApiClient logic against httpx.MockTransport: endpoints, errors, retries, shared budget."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from testio_sync.api import ApiClient, RetryPolicy
from testio_sync.errors import (
    AccessError,
    ApiError,
    AuthError,
    BadResponseError,
    ConfigError,
    RetryableApiError,
)
from testio_sync.settings import Secret, Settings

from .support import BASE_URL, FAST, TOKEN, envelope, mock_client, path_of, run


def _always(status: int) -> Any:
    return lambda request: httpx.Response(status, json={})


def _sequence(*responses: httpx.Response | Exception) -> Any:
    """A handler answering with each item in turn (raising exceptions), then the last forever."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        item = responses[min(len(calls), len(responses) - 1)]
        calls.append(request)
        if isinstance(item, Exception):
            raise item
        return item

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


async def _fail(client: ApiClient) -> ApiError:
    async with client:
        with pytest.raises(ApiError) as info:
            await client.fetch_product(5)
    return info.value


def test_each_endpoint_asks_its_path_and_returns_the_unwrapped_envelope() -> None:
    """Every fetch_* method maps to one path, sends its params and unwraps its key."""
    seen: list[tuple[str, dict[str, str]]] = []
    answers = {
        "products": ("products", [{"id": 1}]),
        "products/1": ("product", {"id": 1}),
        "products/1/features": ("features", [{"id": 2}]),
        "products/1/sections/9/features": ("features", [{"id": 3}]),
        "products/1/exploratory_tests": ("exploratory_tests", [{"id": 4}]),
        "exploratory_tests/4": ("exploratory_test", {"id": 4}),
        "bugs": ("bugs", [{"id": 5}]),
        "bugs/5": ("bug", {"id": 5}),
        "bugs/reject_reasons": ("reject_reasons", [{"key": "irrelevant"}]),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((path_of(request), dict(request.url.params)))
        return envelope(*answers[path_of(request)])

    async def scenario() -> list[Any]:
        async with mock_client(handler) as client:
            return [
                await client.fetch_products(),
                await client.fetch_product(1),
                await client.fetch_features(1),
                await client.fetch_section_features(1, 9),
                await client.fetch_test_page(1, 3, per_page=10),
                await client.fetch_test(4),
                await client.fetch_bugs([4, 7, 8]),
                await client.fetch_bug(5),
                await client.fetch_reject_reasons(),
            ]

    results = run(scenario())
    assert results == [
        [{"id": 1}],
        {"id": 1},
        [{"id": 2}],
        [{"id": 3}],
        [{"id": 4}],
        {"id": 4},
        [{"id": 5}],
        {"id": 5},
        [{"key": "irrelevant"}],
    ]
    assert seen[4] == ("products/1/exploratory_tests", {"page": "3", "per_page": "10"})
    assert seen[6] == ("bugs", {"filter_test_cycle_ids": "4,7,8"})


def test_the_token_travels_only_in_the_authorization_header() -> None:
    """``Authorization: Token <token>``; the URL never carries it."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return envelope("products", [])

    async def scenario() -> None:
        async with mock_client(handler) as client:
            await client.fetch_products()

    run(scenario())
    (request,) = requests
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert TOKEN not in str(request.url)


def test_a_refused_token_raises_auth_error_at_once_without_retries() -> None:
    """401 is fatal: one request, a message that says which variable to check."""
    client = mock_client(_always(401))
    error = run(_fail(client))
    assert isinstance(error, AuthError)
    assert error.status == 401
    assert "TESTIO_CUSTOMER_API_TOKEN" in str(error)
    assert client.request_count == 1


def test_after_a_refused_token_no_further_request_is_sent() -> None:
    """Queued and later calls fail with AuthError at once: a revoked token stops everything."""
    client = mock_client(_always(401), max_concurrent=1)

    async def scenario() -> list[Any]:
        async with client:
            return await asyncio.gather(
                *(client.fetch_product(i) for i in range(10)), return_exceptions=True
            )

    errors = run(scenario())
    assert all(isinstance(e, AuthError) for e in errors)
    assert client.request_count == 1


@pytest.mark.parametrize("status", [403, 404])
def test_forbidden_or_unknown_objects_raise_access_error_without_retries(status: int) -> None:
    """403/404 are per-object: skip it, no retries."""
    client = mock_client(_always(status))
    error = run(_fail(client))
    assert isinstance(error, AccessError)
    assert (error.status, error.path, client.request_count) == (status, "products/5", 1)


def test_features_of_a_sectioned_product_raise_api_error_422() -> None:
    """The caller switches to the section endpoint on this status."""
    client = mock_client(_always(422))

    async def scenario() -> ApiError:
        async with client:
            with pytest.raises(ApiError) as info:
                await client.fetch_features(1)
        return info.value

    error = run(scenario())
    assert type(error) is ApiError
    assert (error.status, client.request_count) == (422, 1)


def test_transient_gateway_errors_are_retried_until_they_clear() -> None:
    """502, 503 and 504 back off and retry; the answer after them is returned."""
    handler = _sequence(
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(504),
        envelope("product", {"id": 5}),
    )
    client = mock_client(handler)

    async def scenario() -> dict[str, Any]:
        async with client:
            return await client.fetch_product(5)

    assert run(scenario()) == {"id": 5}
    assert client.request_count == 4


def test_transient_errors_past_the_policy_raise_retryable_api_error() -> None:
    """After max_attempts the client gives up with the last status."""
    client = mock_client(_always(503))
    error = run(_fail(client))
    assert isinstance(error, RetryableApiError)
    assert error.status == 503
    assert client.request_count == FAST.max_attempts


def test_a_500_is_retried_once_then_raised_with_its_status() -> None:
    """A repeated 500 is a broken record, not load: one quick retry, then ApiError(500)."""
    client = mock_client(_always(500))
    error = run(_fail(client))
    assert type(error) is ApiError
    assert (error.status, client.request_count) == (500, 2)


def test_a_500_that_clears_on_its_retry_returns_the_answer() -> None:
    """The single retry of a 500 is a real retry."""
    client = mock_client(_sequence(httpx.Response(500), envelope("product", {"id": 5})))

    async def scenario() -> dict[str, Any]:
        async with client:
            return await client.fetch_product(5)

    assert run(scenario()) == {"id": 5}


def test_an_edge_timeout_524_is_raised_at_once_for_the_caller_to_split() -> None:
    """Asking again for the same too-large answer cannot help."""
    client = mock_client(_always(524))
    error = run(_fail(client))
    assert isinstance(error, RetryableApiError)
    assert (error.status, client.request_count) == (524, 1)


@pytest.mark.parametrize(
    "broken",
    [
        httpx.Response(200, text="<html>Bad gateway</html>"),
        httpx.Response(200, json={"products": []}),
        httpx.Response(200, json={"product": [1, 2]}),
        httpx.Response(200, json=[{"id": 5}]),
        httpx.Response(200, content=b'{"product": {"id": 5'),
    ],
    ids=["html", "wrong-key", "wrong-type", "no-object", "truncated"],
)
def test_a_broken_body_is_retried_and_never_half_returned(broken: httpx.Response) -> None:
    """Not JSON or no envelope key: retried; past the policy it is BadResponseError."""
    client = mock_client(lambda request: broken)
    error = run(_fail(client))
    assert isinstance(error, BadResponseError)
    assert client.request_count == FAST.max_attempts

    healed = mock_client(_sequence(broken, envelope("product", {"id": 5})))

    async def scenario() -> dict[str, Any]:
        async with healed:
            return await healed.fetch_product(5)

    assert run(scenario()) == {"id": 5}


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("read timed out"), httpx.ConnectError("connection refused")]
)
def test_timeouts_and_connection_errors_are_retried(exc: Exception) -> None:
    """A failed attempt without an answer is retried; past the policy it is retryable."""
    client = mock_client(_sequence(exc, envelope("product", {"id": 5})))

    async def scenario() -> dict[str, Any]:
        async with client:
            return await client.fetch_product(5)

    assert run(scenario()) == {"id": 5}

    dead = mock_client(_sequence(exc))
    error = run(_fail(dead))
    assert isinstance(error, RetryableApiError)
    assert error.status is None
    assert dead.request_count == FAST.max_attempts


def test_a_429_pauses_every_request_of_the_client_until_retry_after() -> None:
    """The rate limit is per IP: after one 429, no request starts before the pause ends.

    Retry-After asks for an hour; the policy clamps it to max_wait_s.
    """
    arrivals: list[tuple[float, str]] = []
    throttled_at: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        now = asyncio.get_running_loop().time()
        arrivals.append((now, path_of(request)))
        if not throttled_at:
            throttled_at.append(now)
            return httpx.Response(429, headers={"Retry-After": "3600"})
        return envelope("product", {"id": 1})

    policy = RetryPolicy(base_delay_s=0.001, max_wait_s=0.05)
    client = mock_client(handler, retry=policy, max_concurrent=1)

    async def scenario() -> list[dict[str, Any]]:
        async with client:
            return await asyncio.gather(*(client.fetch_product(i) for i in range(1, 6)))

    results = run(scenario())
    assert len(results) == 5
    assert client.request_count == 6
    later = [t for t, _ in arrivals[1:]]
    assert all(t >= throttled_at[0] + policy.max_wait_s for t in later)
    assert "products/1" in [p for _, p in arrivals[1:]]


def test_a_429_without_retry_after_backs_off_and_retries() -> None:
    """No header: the policy's backoff decides the pause."""
    client = mock_client(_sequence(httpx.Response(429), envelope("product", {"id": 5})))

    async def scenario() -> dict[str, Any]:
        async with client:
            return await client.fetch_product(5)

    assert run(scenario()) == {"id": 5}
    assert client.request_count == 2


def test_endless_rate_limiting_ends_in_retryable_api_error() -> None:
    """Throttling has its own bound, so a client never waits forever."""
    policy = RetryPolicy(base_delay_s=0.001, max_wait_s=0.001, max_throttled=3)
    client = mock_client(_always(429), retry=policy)
    error = run(_fail(client))
    assert isinstance(error, RetryableApiError)
    assert (error.status, client.request_count) == (429, 4)


def test_requests_in_flight_never_exceed_max_concurrent() -> None:
    """One semaphore bounds the whole client, whichever endpoints are called."""
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        if path_of(request).startswith("bugs"):
            return envelope("bugs", [])
        return envelope("product", {"id": 1})

    client = mock_client(handler, max_concurrent=4)

    async def scenario() -> None:
        async with client:
            calls = [client.fetch_product(i) for i in range(30)]
            calls += [client.fetch_bugs([i]) for i in range(30)]
            await asyncio.gather(*calls)

    run(scenario())
    assert peak == 4
    assert client.request_count == 60


def test_test_environment_credentials_are_stripped_at_the_boundary() -> None:
    """Pages and single tests keep only the environment's id and title."""
    environment = {
        "id": 3,
        "title": "Staging",
        "url": "https://staging.example",
        "username": "qa",
        "password": "hunter2",
        "access": "vpn",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        test = {"id": 9, "test_environment": dict(environment)}
        if path_of(request) == "exploratory_tests/9":
            return envelope("exploratory_test", test)
        return envelope("exploratory_tests", [test, {"id": 10, "test_environment": None}])

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with mock_client(handler) as client:
            return await client.fetch_test(9), await client.fetch_test_page(1, 1)

    single, page = run(scenario())
    assert single["test_environment"] == {"id": 3, "title": "Staging"}
    assert page[0]["test_environment"] == {"id": 3, "title": "Staging"}
    assert page[1]["test_environment"] is None
    assert "hunter2" not in repr((single, page))


def test_the_token_never_appears_in_errors_reprs_or_log_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every failure kind is rendered and logged with the path only."""
    caplog.set_level(logging.DEBUG)
    handlers = [
        _always(401),
        _always(403),
        _always(422),
        _always(503),
        _always(524),
        _sequence(httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(500)),
        lambda request: httpx.Response(200, text="not json"),
        _sequence(httpx.ReadTimeout("timed out")),
    ]
    rendered: list[str] = []
    for handler in handlers:
        client = mock_client(handler)
        error = run(_fail(client))
        rendered += [str(error), repr(error), repr(client), str(error.__cause__)]
    rendered += [record.getMessage() for record in caplog.records]
    rendered += [repr(Settings(api_token=Secret(TOKEN)))]
    assert caplog.records  # retries were logged
    assert all(TOKEN not in text for text in rendered)


def test_from_settings_takes_url_token_and_limits_from_settings() -> None:
    """Settings give the base URL, token, limits and policy; keywords override them."""
    settings = Settings(
        api_base_url=BASE_URL,
        api_token=Secret(TOKEN),
        max_concurrent_requests=3,
        http_timeout_s=7.0,
        max_retries=2,
        retry_max_wait_s=9.0,
    )
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return envelope("products", [])

    client = ApiClient.from_settings(settings, transport=httpx.MockTransport(handler))

    async def scenario() -> None:
        async with client:
            await client.fetch_products()

    run(scenario())
    assert (client.max_concurrent, client.retry.max_attempts, client.retry.max_wait_s) == (3, 3, 9)
    assert str(requests[0].url) == f"{BASE_URL}/products"
    assert requests[0].headers["Authorization"] == f"Token {TOKEN}"
    assert requests[0].extensions["timeout"]["read"] == 7.0
    with pytest.raises(ConfigError):
        ApiClient.from_settings(Settings(api_base_url=BASE_URL))


def test_an_empty_bug_filter_sends_no_request() -> None:
    """The server ignores an empty filter and would answer with every bug."""
    client = mock_client(_always(500))

    async def scenario() -> list[dict[str, Any]]:
        async with client:
            return await client.fetch_bugs([])

    assert run(scenario()) == []
    assert client.request_count == 0
