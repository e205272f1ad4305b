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
        self._faults: Counter[str] = Counter()

    def record(self, endpoint: str, status: int, *, faults: tuple[str, ...] = ()) -> None:
        """Count one answer, and the faults it carried that its status does not show."""
        with self._lock:
            self._counts[(endpoint, status)] += 1
            self._faults.update(faults)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faults.clear()

    def to_dict(self) -> dict[str, Any]:
        """``{total, by_endpoint, by_status, by_endpoint_status, faults}``; status keys are strings.

        ``faults`` counts what a status cannot show: ``hang`` (answer held back) and
        ``malformed`` (a 200 whose body is broken).
        """
        with self._lock:
            counts = sorted(self._counts.items())
            faults = dict(sorted(self._faults.items()))
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
            "faults": faults,
        }
