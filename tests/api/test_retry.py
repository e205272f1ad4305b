"""The retry policy: what each answer means, how long to wait, Retry-After in both forms."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from testio_sync.api import Decision, RetryPolicy, classify, retry_after_seconds

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


@pytest.mark.parametrize(
    ("status", "decision"),
    [
        (200, Decision.OK),
        (401, Decision.FATAL),
        (400, Decision.FATAL),
        (422, Decision.FATAL),
        (403, Decision.SKIP),
        (404, Decision.SKIP),
        (429, Decision.THROTTLE),
        (500, Decision.RETRY_ONCE),
        (502, Decision.RETRY),
        (503, Decision.RETRY),
        (504, Decision.RETRY),
        (520, Decision.RETRY),
        (524, Decision.SPLIT),
        (501, Decision.FATAL),
    ],
)
def test_each_status_is_classified_as_the_contract_says(status: int, decision: Decision) -> None:
    """Statuses from the contract's error table map to one decision each."""
    assert classify(_response(status)) is decision


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.PoolTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("peer closed"),
        json.JSONDecodeError("bad", "<html>", 0),
    ],
)
def test_timeouts_dropped_connections_and_broken_bodies_are_retried(exc: Exception) -> None:
    """Transport failures and unparseable bodies are transient."""
    assert classify(exc) is Decision.RETRY


@pytest.mark.parametrize(
    "exc", [httpx.UnsupportedProtocol("ftp"), httpx.LocalProtocolError("bad header")]
)
def test_misconfiguration_errors_are_fatal(exc: Exception) -> None:
    """A bad URL or header will fail the same way every time."""
    assert classify(exc) is Decision.FATAL


def test_retry_after_in_seconds_is_read() -> None:
    """``Retry-After: 7`` means seven seconds."""
    assert retry_after_seconds(_response(429, **{"Retry-After": "7"}), NOW) == 7.0


def test_retry_after_as_http_date_is_read_relative_to_now() -> None:
    """An HTTP date (RFC 9110 IMF-fixdate) gives the seconds until that moment."""
    when = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    assert retry_after_seconds(_response(429, **{"Retry-After": when}), NOW) == 42.0


def test_retry_after_in_the_past_or_negative_means_now() -> None:
    """A date already past, or a negative number, never gives a negative wait."""
    past = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    assert retry_after_seconds(_response(429, **{"Retry-After": past}), NOW) == 0.0
    assert retry_after_seconds(_response(429, **{"Retry-After": "-3"}), NOW) == 0.0


def test_missing_or_unreadable_retry_after_gives_none() -> None:
    """The caller then falls back to backoff."""
    assert retry_after_seconds(_response(429), NOW) is None
    assert retry_after_seconds(_response(429, **{"Retry-After": "soon"}), NOW) is None


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    """Exponential steps from the base delay, never above max_delay_s."""
    policy = RetryPolicy(base_delay_s=0.25, max_delay_s=1.0, jitter=False)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_jittered_backoff_stays_within_the_upper_half_of_each_step() -> None:
    """Equal jitter: every delay lies in [step / 2, step], and the draws differ."""
    policy = RetryPolicy(base_delay_s=0.25, max_delay_s=8.0, jitter=True)
    rng = random.Random(7)
    for attempt in range(1, 10):
        step = min(8.0, 0.25 * 2 ** (attempt - 1))
        draws = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in draws)
        assert len(set(draws)) > 1


def test_throttle_wait_is_clamped_to_max_wait() -> None:
    """A server asking for an hour gets max_wait_s; no header falls back to backoff."""
    policy = RetryPolicy(base_delay_s=0.5, max_wait_s=60.0, jitter=False)
    assert policy.throttle_s(3600.0, 1) == 60.0
    assert policy.throttle_s(2.0, 1) == 2.0
    assert policy.throttle_s(None, 2) == 1.0


def test_a_policy_without_attempts_is_refused() -> None:
    """Zero attempts would never send a request."""
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
