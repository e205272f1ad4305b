"""Time parsing and formatting shared by the API client, the store and the entry points.

The API sends ISO 8601 with mixed offsets; everything here is normalised to
aware UTC datetimes so that comparisons are never made on text. Three text
forms leave the package, each made here only: ``to_iso`` for JSON
(``2026-11-27T14:45:25Z``), ``to_stored`` for the store's columns (microseconds,
sorts as text) and ``human_time`` for text meant for people
(``2026-11-27 14:45 UTC``).
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


def parse_iso(value: str | datetime | None) -> datetime | None:
    """ISO 8601 text (``Z``, an offset, or none meaning UTC) as aware UTC; a datetime as is.

    Raises:
        ValueError: text that is not ISO 8601.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_api_time(value: str | None) -> datetime | None:
    """Parse an API timestamp (``2021-04-08T13:00:00+02:00``) into aware UTC."""
    return parse_iso(value)


def to_iso(value: datetime | None) -> str | None:
    """Aware UTC ``datetime`` as ``2026-01-31T00:00:00Z`` (or None): the JSON form."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_stored(value: datetime) -> str:
    """``2026-01-31T00:00:00.000000Z``: the store's form; fixed width, so text sorts by time."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def human_time(value: datetime | str | None) -> str:
    """A time for people, ``2026-01-31 13:05 UTC`` (``never`` for None).

    Every text output uses this; JSON keeps ``to_iso``.
    """
    parsed = parse_iso(value)
    if parsed is None:
        return "never"
    return parsed.strftime("%Y-%m-%d %H:%M UTC")


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
        raise UsageError(f"{text!r} is in the future", param="since")
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
                f"{text!r} is not a date; use YYYY-MM-DD, '30 days ago' or '30d'", param="since"
            ) from None
    if day > now.date():
        raise UsageError(f"{text!r} is in the future", param="since")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
