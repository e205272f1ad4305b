"""What ``status`` says about the sync lock's holder, its silence included.

A holder heartbeats every ``HEARTBEAT_S`` (30 s) and is judged hung only after
``STALE_AFTER_S`` (1 h) without one. In between, a holder that has stopped (a
stopped process, a stuck event loop, a host cut off without its session ending
yet) would look like any running sync for up to an hour. So status says so once
the holder has missed ``OVERDUE_AFTER_S`` worth of heartbeats (four: two minutes,
past any pause of a busy but healthy run), and keeps showing a hung holder, which
still holds the lock until the next sync takes it over. A dead holder (its process
or session gone) has already let the lock go: status shows the lock free.
"""

from __future__ import annotations

from typing import Any

from testio_sync.settings import Settings
from testio_sync.sync.pg_lock import HEARTBEAT_S, STALE_AFTER_S, lock_holder

OVERDUE_AFTER_S = 4 * HEARTBEAT_S
HUNG = "holder is hung"


def duration(seconds: float) -> str:
    """``45 s``, ``7 min``, ``1 h``, ``2.5 h``: a silence or a bound, as status words it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"


def silence_of(silent_s: float | None, *, hung: bool) -> str | None:
    """The sentence for a holder silent past the overdue bound, or None while it beats."""
    if silent_s is None or (not hung and silent_s <= OVERDUE_AFTER_S):
        return None
    said = f"no heartbeat for {duration(silent_s)}"
    if hung:
        return f"{said}; hung (limit {duration(STALE_AFTER_S)}): the next sync takes the lock over"
    return f"{said}; treated as hung after {duration(STALE_AFTER_S)}"


def holder_status(settings: Settings) -> dict[str, Any] | None:
    """The holder ``status`` shows (live or hung), with its silence; None when the lock is free.

    Fields beside the holder record: ``silent_seconds`` (since its last heartbeat, by the
    clock of the lock: the server's on PostgreSQL), ``heartbeat_overdue``, ``hung``,
    ``hung_after_seconds`` and ``silence`` (the sentence, or None).
    """
    holder = lock_holder(settings, live_only=False)
    if holder is None:
        return None
    stale = holder.pop("stale", None) or ""
    hung = stale.startswith(HUNG)
    if stale and not hung:
        return None
    silent = holder.get("silent_seconds")
    silence = silence_of(silent, hung=hung)
    return {
        **holder,
        "silent_seconds": silent,
        "heartbeat_overdue": silence is not None,
        "hung": hung,
        "hung_after_seconds": STALE_AFTER_S,
        "silence": silence,
    }
