"""Time parsing shared by the API client, the store and the entry points.

The API sends ISO 8601 with mixed offsets; everything here is normalised to
aware UTC datetimes so that comparisons are never made on text.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from testio_sync.errors import UsageError

_RELATIVE = re.compile(
    r"^\s*(\d+)\s*(d|day|days|w|week|weeks|h|hour|hours)(\s+ago)?\s*$", re.IGNORECASE
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_api_time(value: str | None) -> datetime | None:
    """Parse an API timestamp (``2021-04-08T13:00:00+02:00``) into aware UTC."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_iso(value: datetime | None) -> str | None:
    """Aware UTC ``datetime`` as ``2026-01-31T00:00:00Z`` (or None)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """Parse a ``since`` value into the UTC start of that day.

    Accepts an ISO date (``2026-01-31``), ``"30 days ago"``, ``"30d"``, ``"2 weeks"``
    and ``today``/``yesterday``. The CLI and the MCP tool both call this, so the
    two mean the same thing.

    Raises:
        UsageError: unparseable text, an impossible date, or a day in the future.
    """
    now = (now or utc_now()).astimezone(UTC)
    raw = text.strip()
    lowered = raw.lower()
    day: date
    if lowered == "today":
        day = now.date()
    elif lowered == "yesterday":
        day = now.date() - timedelta(days=1)
    elif lowered == "tomorrow":
        raise UsageError(f"since: {text!r} is in the future")
    elif match := _RELATIVE.match(raw):
        amount, unit = int(match.group(1)), match.group(2).lower()[0]
        delta = {"d": timedelta(days=amount), "w": timedelta(weeks=amount)}.get(
            unit, timedelta(hours=amount)
        )
        day = (now - delta).date()
    else:
        try:
            day = date.fromisoformat(raw[:10]) if len(raw) >= 10 else date.fromisoformat(raw)
            if len(raw) > 10:
                day = parse_api_time(raw).date()  # type: ignore[union-attr]
        except ValueError:
            raise UsageError(
                f"since: {text!r} is not a date; use YYYY-MM-DD, '30 days ago' or '30d'"
            ) from None
    if day > now.date():
        raise UsageError(f"since: {text!r} is in the future")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
