"""One retry policy for every API call: what each answer means and how long to wait.

``classify`` turns an HTTP answer (or the transport error that replaced it) into
a ``Decision``; ``RetryPolicy`` says how often and how long to retry; and
``retry_after_seconds`` reads a 429's ``Retry-After`` in either of its two forms.
Keeping all three here means the client holds no status numbers of its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx

__all__ = ["Decision", "RetryPolicy", "classify", "retry_after_seconds"]


class Decision(StrEnum):
    """What the client does with one answer."""

    OK = "ok"  # a 2xx: check the body, then use it
    RETRY = "retry"  # transient (502/503/504, timeouts, dropped connections): back off
    RETRY_ONCE = "retry_once"  # 500: usually a broken record, so one quick retry at most
    THROTTLE = "throttle"  # 429: pause every request of the client, then retry
    SPLIT = "split"  # 524: the answer was too large; the caller asks for less
    SKIP = "skip"  # 403/404: this object is out of reach, the rest goes on
    FATAL = "fatal"  # 401, 400, 422, anything unknown: retrying cannot help


# Edge and gateway failures that clear up on their own.
_TRANSIENT_STATUSES = frozenset({502, 503, 504})


def classify(outcome: httpx.Response | BaseException) -> Decision:
    """Say what to do with a response or with the exception raised instead of one."""
    if isinstance(outcome, BaseException):
        return _classify_error(outcome)
    status = outcome.status_code
    if 200 <= status < 300:
        return Decision.OK
    if status == 429:
        return Decision.THROTTLE
    if status in (403, 404):
        return Decision.SKIP
    if status == 500:
        return Decision.RETRY_ONCE
    if status == 524:
        return Decision.SPLIT
    if status in _TRANSIENT_STATUSES:
        return Decision.RETRY
    if status > 500 and status not in (501, 505):
        # Other edge answers (520-523, 525+) behave like 502: the origin was unreachable.
        return Decision.RETRY
    return Decision.FATAL


def _classify_error(exc: BaseException) -> Decision:
    # Timeouts, resets and half-closed keep-alive connections are transient; a bad
    # URL, an unsupported scheme or a proxy misconfiguration is not.
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return Decision.RETRY
    if isinstance(exc, ValueError):  # the body was not JSON or lacked its envelope
        return Decision.RETRY
    return Decision.FATAL


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds a 429 asks us to wait, from ``Retry-After`` as seconds or an HTTP date.

    Returns None when the header is absent or unreadable, and never a negative
    number (a date in the past means "now").
    """
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT even when the zone is missing
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to retry; one instance is shared by a client.

    ``max_attempts`` bounds every kind of retry but throttling, which has its own,
    larger bound (``max_throttled``): a rate limit is shared by all requests, and
    counting its waits as failures would fail requests that are merely queued.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    max_wait_s: float = 60.0
    jitter: bool = True
    max_throttled: int = 30

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay_s, self.max_delay_s, self.max_wait_s) < 0:
            raise ValueError("delays must not be negative")

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential, capped, jittered.

        With jitter the delay is drawn from the upper half of the exponential step
        ("equal jitter"): clients that failed together spread out, yet none retries
        almost at once.
        """
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt - 1))
        if not self.jitter:
            return delay
        return (rng or random).uniform(delay / 2, delay)

    def throttle_s(self, retry_after: float | None, attempt: int) -> float:
        """Pause after a 429: the server's ``Retry-After`` if given, else backoff, clamped."""
        wait = self.backoff_s(attempt) if retry_after is None else retry_after
        return min(max(0.0, wait), self.max_wait_s)
