"""``testio_sync.dates``: the one parser of ISO times and the three text forms that leave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from testio_sync.dates import human_time, parse_iso, parse_since, to_iso, to_stored
from testio_sync.errors import UsageError

MOMENT = datetime(2026, 11, 27, 14, 45, 25, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27T14:45:25.123456Z",  # the store and the lock record
        "2026-11-27T14:45:25.123456+00:00",  # Python's isoformat
        "2026-11-27T16:45:25.123456+02:00",  # the API, with an offset
        "2026-11-27T14:45:25.123456",  # naive text means UTC
    ],
)
def test_every_iso_form_parses_to_the_same_aware_utc_moment(text: str) -> None:
    parsed = parse_iso(text)
    assert parsed == MOMENT and parsed.tzinfo == UTC


def test_a_datetime_passes_through_in_utc_and_nothing_stays_nothing() -> None:
    east = MOMENT.astimezone(timezone(timedelta(hours=5)))
    assert parse_iso(east) == MOMENT and parse_iso(east).tzinfo == UTC
    assert parse_iso(None) is None and parse_iso("") is None
    with pytest.raises(ValueError):
        parse_iso("yesterday-ish")


def test_the_three_text_forms() -> None:
    """JSON whole seconds with Z; the store fixed-width microseconds; people minutes and UTC."""
    assert to_iso(MOMENT) == "2026-11-27T14:45:25Z"
    assert to_stored(MOMENT) == "2026-11-27T14:45:25.123456Z"
    assert human_time(MOMENT) == "2026-11-27 14:45 UTC"
    assert human_time("2026-11-27T16:45:25+02:00") == "2026-11-27 14:45 UTC"
    assert human_time(None) == "never"
    assert parse_iso(to_stored(MOMENT)) == MOMENT
    assert to_stored(MOMENT.replace(microsecond=0)) < to_stored(MOMENT)  # text order = time order


def test_since_errors_are_neutral_and_name_their_parameter() -> None:
    """No flag or tool parameter in the text: each entry point adds its own name."""
    with pytest.raises(UsageError) as caught:
        parse_since("someday", now=MOMENT)
    assert str(caught.value) == "'someday' is not a date; use YYYY-MM-DD, '30 days ago' or '30d'"
    assert caught.value.param == "since"
    with pytest.raises(UsageError, match=r"^'tomorrow' is in the future$"):
        parse_since("tomorrow", now=MOMENT)
