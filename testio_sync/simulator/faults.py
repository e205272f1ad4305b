"""Fault injection: the misbehaviours of the real API, switchable at run time.

``FaultConfig`` is the declarative part (what the start-up flags and
``POST /_simulator/faults`` set); ``FaultState`` makes the per-request
decisions. Random faults draw from a seeded stream, so a run with the same
requests in the same order sees the same faults.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

ERROR_STATUSES = (502, 503, 504)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Which faults are on. All off by default.

    ``broken_test_ids`` names tests whose pages answer 500; ``broken_tests`` asks
    for that many more, picked deterministically among archived tests.
    ``failing_product_ids`` names products whose every test page answers 500, at
    every page size and past the end of the list too (a broken list, not a test).
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    rate_limit_rps: float = 0.0  # 0 = no limit
    retry_after_http_date: bool = False
    error_rate: float = 0.0
    broken_test_ids: tuple[int, ...] = ()
    broken_tests: int = 0
    failing_product_ids: tuple[int, ...] = ()
    bug_batch_limit: int = 0  # 0 = no limit
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0
    token_revoked: bool = False
    empty_product_list: bool = False  # GET products answers 200 with []
    empty_test_pages: bool = False  # every test page answers 200 with []

    def __post_init__(self) -> None:
        for name in ("error_rate", "hang_rate", "malformed_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in (
            "latency_ms",
            "latency_jitter_ms",
            "rate_limit_rps",
            "broken_tests",
            "bug_batch_limit",
            "hang_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("broken_test_ids", "failing_product_ids"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["broken_test_ids"] = list(self.broken_test_ids)
        data["failing_product_ids"] = list(self.failing_product_ids)
        return data

    def updated(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with ``changes`` applied (the partial update of ``POST /_simulator/faults``).

        Raises:
            ValueError: an unknown field or a value of the wrong type or range.
        """
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            clean[name] = _coerce(name, known[name].default, value)
        return dataclasses.replace(self, **clean)


def _coerce(name: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in value
        ):
            raise ValueError(f"{name} must be a list of integers")
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if isinstance(default, int):
        if value != int(value):
            raise ValueError(f"{name} must be a whole number")
        return int(value)
    return float(value)


@dataclass(slots=True)
class Decision:
    """What the fault layer does to one request, decided before the handler runs.

    It carries the config and broken ids it was drawn from, so one request sees
    one consistent set of faults even when they are changed meanwhile.
    """

    config: FaultConfig
    broken_ids: frozenset[int]
    retry_after_s: int | None = None  # set: answer 429
    error_status: int | None = None  # set: answer 502/503/504
    malformed: str | None = None  # set: mangle a 200 answer this way
    delay_s: float = 0.0  # latency plus any hang
    hung: bool = False  # the answer is held back ``hang_seconds``


@dataclass(slots=True)
class _Bucket:
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)


class FaultState:
    """The current ``FaultConfig`` plus what its decisions need: rate budget, random stream."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(f"testio-sim:{seed}:faults")
        self.config = FaultConfig()
        self.broken_ids: frozenset[int] = frozenset()
        self._bucket = _Bucket()

    def set(self, config: FaultConfig, archived_test_ids: list[int]) -> None:
        """Switch to ``config``; ``broken_tests: N`` is resolved against the archived tests now."""
        picker = random.Random(f"testio-sim:{self._seed}:broken")
        picked = picker.sample(
            sorted(archived_test_ids), min(config.broken_tests, len(archived_test_ids))
        )
        with self._lock:
            self.config = config
            self.broken_ids = frozenset(config.broken_test_ids) | frozenset(picked)
            self._bucket = _Bucket(tokens=config.rate_limit_rps)

    def describe(self) -> dict[str, Any]:
        data = self.config.to_dict()
        data["resolved_broken_test_ids"] = sorted(self.broken_ids)
        return data

    def decide(self) -> Decision:
        """Draw this request's faults. Every request draws the same numbers, hit or not."""
        with self._lock:
            config, rng = self.config, self._rng
            error_roll, hang_roll, malformed_roll, kind_roll, jitter_roll = (
                rng.random() for _ in range(5)
            )
            decision = Decision(
                config, self.broken_ids, retry_after_s=self._take_token(config.rate_limit_rps)
            )
        if error_roll < config.error_rate:
            decision.error_status = ERROR_STATUSES[int(kind_roll * len(ERROR_STATUSES))]
        if malformed_roll < config.malformed_rate:
            decision.malformed = ("not_json", "no_envelope")[int(kind_roll * 2)]
        delay_ms = config.latency_ms + jitter_roll * config.latency_jitter_ms
        decision.delay_s = delay_ms / 1000
        if hang_roll < config.hang_rate:
            decision.delay_s += config.hang_seconds
            decision.hung = True
        return decision

    def _take_token(self, rps: float) -> int | None:
        """Token bucket of ``rps`` per second (burst ``rps``); seconds to wait when empty."""
        if rps <= 0:
            return None
        now = time.monotonic()
        bucket = self._bucket
        bucket.tokens = min(rps, bucket.tokens + (now - bucket.stamp) * rps)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / rps))


def retry_after_header(seconds: int, http_date: bool) -> str:
    """``Retry-After`` in seconds, or as an HTTP date when the fault asks for that form."""
    if http_date:
        # Rounded up: a date has whole seconds, and it must not ask for less than ``seconds``.
        return formatdate(math.ceil(time.time()) + seconds, usegmt=True)
    return str(seconds)
