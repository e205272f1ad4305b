"""When the periodic background sync is due: a pure decision over explicit times.

The huey periodic task runs every minute and asks this; the persisted
``last_sync_completed`` makes a manual full sync reset the timer and lets the
decision survive restarts. Failed scheduler runs back off exponentially so a
broken token or an outage is not hammered every minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta

BACKOFF_BASE_S = 60.0


def is_sync_due(
    *,
    now: datetime,
    last_completed: datetime | None,
    interval_s: int,
    failures: int = 0,
    last_failure_at: datetime | None = None,
) -> bool:
    """True when a background sync should be enqueued now.

    ``interval_s == 0`` disables background syncs. Never-synced data is due at
    once. After ``failures`` consecutive failed background runs, the next try
    waits ``min(interval, 60 s * 2**(failures-1))`` after the last failure.
    """
    if interval_s <= 0:
        return False
    if failures and last_failure_at is not None:
        wait = min(float(interval_s), BACKOFF_BASE_S * 2 ** (failures - 1))
        if now < last_failure_at + timedelta(seconds=wait):
            return False
    if last_completed is None:
        return True
    return now >= last_completed + timedelta(seconds=interval_s)
