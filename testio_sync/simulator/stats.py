"""Request counts per endpoint and status, so tests can assert how a client behaved.

A client test can then check "the page was fetched twice, then in halves"
without a proxy. Only contract endpoints are counted, never ``/_simulator/*``.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class RequestStats:
    """Thread-safe counters; endpoints are named by route (``products``, ``bug``...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()

    def record(self, endpoint: str, status: int) -> None:
        with self._lock:
            self._counts[(endpoint, status)] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def to_dict(self) -> dict[str, Any]:
        """``{total, by_endpoint, by_status, by_endpoint_status}``; status keys are strings."""
        with self._lock:
            counts = sorted(self._counts.items())
        by_endpoint: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        by_endpoint_status: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in counts:
            by_endpoint[endpoint] += count
            by_status[str(status)] += count
            by_endpoint_status.setdefault(endpoint, {})[str(status)] = count
        return {
            "total": sum(by_endpoint.values()),
            "by_endpoint": dict(sorted(by_endpoint.items())),
            "by_status": dict(sorted(by_status.items())),
            "by_endpoint_status": by_endpoint_status,
        }
