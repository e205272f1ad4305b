"""Map raw API dicts to the store's row tuples, with secrets removed and times in UTC.

Kept apart from ``save.py`` so the mapping rules (what is "sectioned", where a
bug's feature id lives, how a rejection reason is recovered) read in one place
and are testable without a database. Raw JSON is stored as one canonical text
(sorted keys, no spaces) so "did this entity change?" is a string comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from testio_sync.dates import parse_api_time
from testio_sync.settings import scrub_environments
from testio_sync.store.models import Bug, ExploratoryTest, Feature, Product, TestFeature, UtcField

FINAL_STATUSES: frozenset[str] = frozenset({"archived", "cancelled"})
"""Test statuses that never change again: their bugs, once fetched, are final."""

UNFETCHED_STATUSES: frozenset[str] = frozenset({"initialized", "waiting"})
"""Test statuses before testing starts: no bugs yet, one fetch is enough."""

_ENVIRONMENT_KEY = "test_environment"

Raw = dict[str, Any]

# Column order of the row tuples built below. Rows are DB-ready (JSON as canonical
# text, times as UtcField text, booleans as 0/1) so they go straight to executemany.
PRODUCT_FIELDS = [
    Product.id,
    Product.name,
    Product.type,
    Product.description,
    Product.is_sectioned,
    Product.section_ids,
    Product.raw,
    Product.synced_at,
]
FEATURE_FIELDS = [
    Feature.id,
    Feature.product,
    Feature.title,
    Feature.description,
    Feature.howtofind,
    Feature.user_stories,
    Feature.section_ids,
    Feature.raw,
    Feature.synced_at,
]
TEST_FIELDS = [
    ExploratoryTest.id,
    ExploratoryTest.product,
    ExploratoryTest.section_id,
    ExploratoryTest.title,
    ExploratoryTest.status,
    ExploratoryTest.review_status,
    ExploratoryTest.testing_type,
    ExploratoryTest.start_at,
    ExploratoryTest.end_at,
    ExploratoryTest.created_by,
    ExploratoryTest.submitted_by,
    ExploratoryTest.raw,
    ExploratoryTest.synced_at,
    ExploratoryTest.end_week,
]
TEST_FEATURE_FIELDS = [
    TestFeature.id,
    TestFeature.test,
    TestFeature.feature_id,
    TestFeature.title,
    TestFeature.raw,
]
BUG_FIELDS = [
    Bug.id,
    Bug.test,
    Bug.product_id,
    Bug.feature_id,
    Bug.test_feature_id,
    Bug.title,
    Bug.severity,
    Bug.status,
    Bug.auto_accepted,
    Bug.known,
    Bug.reject_reason,
    Bug.author_name,
    Bug.reported_at,
    Bug.raw,
    Bug.synced_at,
]


def canonical_json(value: Any) -> str:
    """One text per JSON value, so equal payloads compare equal as strings.

    Compact, keys sorted, non-ASCII kept: the same text ``json.dumps(value,
    sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` gives, 4x faster.
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


_UTC = UtcField()


def utc_text(value: datetime | None) -> str | None:
    """A datetime as the text a ``UtcField`` stores (the rows below are DB-ready)."""
    return _UTC.db_value(value)


def as_utc(value: datetime | str | None) -> datetime | None:
    """An API timestamp parsed to aware UTC; a datetime as is (UtcField refuses naive)."""
    return parse_api_time(value) if isinstance(value, str) else value


def scrub(raw: Raw) -> Raw:
    """``raw`` without environment credentials, whatever the client sent (one rule: settings)."""
    return scrub_environments(raw)


def clean_raw(raw: Raw, *, drop: Iterable[str] = ()) -> tuple[Raw, str]:
    """Scrubbed copy of ``raw`` without the ``drop`` keys, and its canonical text."""
    dropped = tuple(drop)
    data = {k: v for k, v in raw.items() if k not in dropped} if dropped else raw
    text = canonical_json(data)
    if f'"{_ENVIRONMENT_KEY}"' in text:
        scrubbed = scrub(data)
        if scrubbed is not data:  # it held credentials (the client scrubs answers already)
            data, text = scrubbed, canonical_json(scrubbed)
    return data, text


def _nested_id(raw: Mapping[str, Any] | None, *path: str) -> int | None:
    node: Any = raw
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node if isinstance(node, int) and not isinstance(node, bool) else None


def product_sections(product: Raw) -> tuple[bool, list[int]]:
    """(is_sectioned, section ids): ``sections`` first, else ``sections_with_default``."""
    sections = product.get("sections") or []
    with_default = product.get("sections_with_default") or []
    sectioned = bool(sections) or len(with_default) > 1
    source = sections or with_default
    ids = [s["id"] for s in source if isinstance(s, Mapping) and s.get("id") is not None]
    return sectioned, ids


def product_row(product: Raw, now: datetime) -> tuple[tuple[Any, ...], str]:
    """Row for ``PRODUCT_FIELDS`` and the canonical raw text."""
    _, text = clean_raw(product)
    sectioned, section_ids = product_sections(product)
    row = (
        product["id"],
        product.get("name") or "",
        product.get("type"),
        product.get("description"),
        int(sectioned),
        canonical_json(section_ids),
        text,
        utc_text(now),
    )
    return row, text


def feature_row(
    product_id: int, feature: Raw, now: datetime
) -> tuple[tuple[Any, ...], str, list[int]]:
    """Row for ``FEATURE_FIELDS``, the canonical raw text and the section ids.

    The caller's ``section_ids`` key is ours, not the API's: it goes to its own
    column and stays out of ``raw``.
    """
    _, text = clean_raw(feature, drop=("section_ids",))
    section_ids = sorted({int(s) for s in feature.get("section_ids") or []})
    stories = feature.get("user_stories") or []
    row = (
        feature["id"],
        product_id,
        feature.get("title") or "",
        feature.get("description"),
        feature.get("howtofind"),
        canonical_json(list(stories)),
        canonical_json(section_ids),
        text,
        utc_text(now),
    )
    return row, text, section_ids


def test_row(product_id: int, test: Raw, now: datetime) -> tuple[tuple[Any, ...], str]:
    """Row for ``TEST_FIELDS`` and the canonical raw text (credentials removed)."""
    _, text = clean_raw(test)
    row = (
        test["id"],
        product_id,
        _nested_id(test, "section", "id"),
        test.get("title") or test.get("test_title"),
        test.get("status") or "unknown",
        test.get("review_status"),
        test.get("testing_type"),
        utc_text(parse_api_time(test.get("start_at"))),
        utc_text(end_at := parse_api_time(test.get("end_at"))),
        test.get("created_by"),
        test.get("submitted_by"),
        text,
        utc_text(now),
        iso_week(end_at),
    )
    return row, text


def iso_week(moment: datetime | None) -> str | None:
    """The ISO week of a UTC time, ``2026-W48`` (the analytics ``week`` bucket, stored)."""
    if moment is None:
        return None
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def test_feature_rows(test: Raw) -> list[tuple[Any, ...]]:
    """Rows for ``TEST_FEATURE_FIELDS``, one per distinct test-feature id."""
    rows: dict[int, tuple[Any, ...]] = {}
    for item in test.get("features") or []:
        if not isinstance(item, Mapping) or item.get("id") is None:
            continue
        _, text = clean_raw(dict(item))
        rows[item["id"]] = (
            item["id"],
            test["id"],
            item.get("feature_id"),
            item.get("title"),
            text,
        )
    return list(rows.values())


def customer_names(test: Raw) -> set[str]:
    """The customer users a test names (``created_by``, ``submitted_by``)."""
    names = (test.get("created_by"), test.get("submitted_by"))
    return {n for n in names if isinstance(n, str) and n.strip()}


def author_name(bug: Raw) -> str | None:
    author = bug.get("author")
    name = author.get("name") if isinstance(author, Mapping) else None
    return name if isinstance(name, str) and name.strip() else None


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def reason_matcher(reject_reasons: Mapping[str, str] | None) -> dict[str, str]:
    """Default comment text (whitespace and case folded) -> reason key."""
    return {_squash(text): key for text, key in (reject_reasons or {}).items() if text}


def reject_reason(bug: Raw, matcher: Mapping[str, str]) -> str | None:
    """The reason key of a rejected bug, recovered from its comments.

    The API has no reason field: a rejection posts the reason's default comment.
    An exact (folded) match wins; otherwise a comment that contains a default
    comment, since reviewers sometimes add a sentence of their own.
    """
    if bug.get("status") != "rejected" or not matcher:
        return None
    bodies = [
        _squash(c["body"])
        for c in bug.get("comments") or []
        if isinstance(c, Mapping) and isinstance(c.get("body"), str)
    ]
    for body in bodies:
        if body in matcher:
            return matcher[body]
    for body in bodies:
        for text, key in matcher.items():
            if text in body:
                return key
    return None


def bug_row(
    test_id: int, product_id: int, bug: Raw, matcher: Mapping[str, str], now: datetime
) -> tuple[tuple[Any, ...], str]:
    """Row for ``BUG_FIELDS`` and the canonical raw text."""
    _, text = clean_raw(bug)
    feature_id = _nested_id(bug, "test_feature", "feature", "id")
    if feature_id is None:
        feature_id = _nested_id(bug, "feature", "id")
    row = (
        bug["id"],
        test_id,
        product_id,
        feature_id,
        _nested_id(bug, "test_feature", "id"),
        bug.get("title"),
        bug.get("severity"),
        bug.get("status"),
        int(bool(bug.get("auto_accepted"))),
        int(bool(bug.get("known"))),
        reject_reason(bug, matcher),
        author_name(bug),
        utc_text(parse_api_time(bug.get("reported_at"))),
        text,
        utc_text(now),
    )
    return row, text
