"""Entity views: features, users, one bug, one product, read from the store alone.

Each view is a few aggregate queries on a WAL reader, so it never waits for a
running sync; each answer carries ``data_as_of``. An unknown id or name raises
``UsageError`` naming where to find valid ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from testio_sync.dates import to_iso, utc_now
from testio_sync.errors import UsageError
from testio_sync.insights.report import compute_rates
from testio_sync.store import backend, queries
from testio_sync.store.normalize import utc_text
from testio_sync.store.queries import STATUS_BUCKETS, status_bucket, store_call

FEATURE_SORTS = ("title", "tests", "bugs")
USER_KINDS = ("tester", "customer")
USER_SORTS = ("activity", "name", "last_seen")
MAX_TESTS_SHOWN = 20


def _rows(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of one statement of our SQL (``?`` marks), on either store."""
    return list(backend.execute(sql, params).fetchall())


def _as_of(product_ids: Sequence[int] | None) -> str | None:
    return to_iso(queries.oldest_sync_time(list(product_ids) if product_ids else None))


def _choice(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise UsageError(f"{name}: use {', '.join(allowed)}, not {value!r}")
    return value


def _product(product_id: int) -> Any:
    product = queries.find_product(product_id)
    if product is None:
        raise UsageError(
            f"Product {product_id} is not in the local cache; list_products shows the "
            "cached ones, sync_data fetches them."
        )
    return product


def _page(limit: int, offset: int) -> None:
    if not 1 <= limit <= 100:
        raise UsageError("limit must be between 1 and 100")
    if offset < 0:
        raise UsageError("offset must be 0 or more")


def _paged(name: str, items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """One page of ``items`` under ``name``, the total, and the next offset if any."""
    page = items[offset : offset + limit]
    out: dict[str, Any] = {name: page, "total": len(items), "offset": offset}
    if offset + len(page) < len(items):
        out["next_offset"] = offset + len(page)
    return out


def _bug_counts(where: str, params: Sequence[Any]) -> dict[str, Any]:
    """Bugs by status bucket and by severity, with the rates of the quality report."""
    by_status = dict.fromkeys(STATUS_BUCKETS, 0)
    by_severity: dict[str, int] = {}
    total = 0
    sql = (
        "SELECT status, auto_accepted, severity, COUNT(*) FROM bugs"
        f" WHERE {where} GROUP BY status, auto_accepted, severity"
    )
    for status, auto, severity, count in _rows(sql, params):
        total += count
        bucket = status_bucket(status, bool(auto))
        by_status[bucket] = by_status.get(bucket, 0) + count
        key = severity or "unknown"
        by_severity[key] = by_severity.get(key, 0) + count
    rates = {k: None if v is None else round(v, 4) for k, v in compute_rates(by_status).items()}
    return {
        "total": total,
        "by_status": by_status,
        "by_severity": dict(sorted(by_severity.items())),
        "rates": rates,
    }


# -- features ----------------------------------------------------------------------------


@store_call("list features")
def list_features(
    product_id: int, *, sort_by: str = "title", limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """A product's features with user-story, test and bug counts (tests by test feature).

    Raises:
        UsageError: unknown product, sort or page.
    """
    _choice(sort_by, FEATURE_SORTS, "sort_by")
    _page(limit, offset)
    _product(product_id)
    order = {
        "title": "f.title, f.id",
        "tests": "tests DESC, f.title, f.id",
        "bugs": "bugs DESC, f.title, f.id",
    }[sort_by]
    sql = (
        "SELECT f.id, f.title, f.user_stories,"
        " coalesce(t.n, 0) AS tests, coalesce(b.n, 0) AS bugs FROM features f"
        " LEFT JOIN (SELECT tf.feature_id, COUNT(DISTINCT tf.test_id) AS n FROM test_features tf"
        "   JOIN tests ON tests.id = tf.test_id WHERE tests.product_id = ?"
        "   GROUP BY tf.feature_id) t ON t.feature_id = f.id"
        " LEFT JOIN (SELECT feature_id, COUNT(*) AS n FROM bugs WHERE product_id = ?"
        "   GROUP BY feature_id) b ON b.feature_id = f.id"
        f" WHERE f.product_id = ? ORDER BY {order}"
    )
    keys = ("id", "title", "user_stories", "tests", "bugs")
    rows = [dict(zip(keys, row, strict=True)) for row in _rows(sql, [product_id] * 3)]
    for row in rows:  # stored as JSON text: counted here, the same on every store
        row["user_stories"] = len(json.loads(row["user_stories"] or "[]"))
    return {
        "product_id": product_id,
        **_paged("features", rows, limit, offset),
        "data_as_of": _as_of([product_id]),
    }


@store_call("read a feature")
def feature_summary(feature_id: int) -> dict[str, Any]:
    """One feature: its text, user stories, newest tests and bug counts by status and severity.

    Raises:
        UsageError: the feature is not in the store.
    """
    found = _rows(
        "SELECT id, product_id, title, description, howtofind, user_stories, section_ids"
        " FROM features WHERE id = ?",
        [feature_id],
    )
    if not found:
        raise UsageError(
            f"Feature {feature_id} is not in the local cache; list_features shows a "
            "product's features."
        )
    fid, pid, title, description, howtofind, stories, sections = found[0]
    tests = _rows(
        "SELECT DISTINCT t.id, t.title, t.status, t.end_at FROM tests t"
        " JOIN test_features tf ON tf.test_id = t.id WHERE tf.feature_id = ?"
        " ORDER BY t.end_at DESC, t.id DESC",
        [fid],
    )
    return {
        "id": fid,
        "product_id": pid,
        "title": title,
        "description": description,
        "howtofind": howtofind,
        "user_stories": json.loads(stories),
        "section_ids": json.loads(sections),
        "test_count": len(tests),
        "tests": [
            {"id": tid, "title": t, "status": s, "end_at": _iso(end)}
            for tid, t, s, end in tests[:MAX_TESTS_SHOWN]
        ],
        "bugs": _bug_counts("feature_id = ?", [fid]),
        "data_as_of": _as_of([pid]),
    }


# -- users -------------------------------------------------------------------------------

_USERS_SQL = """
SELECT kind, name, SUM(bugs), SUM(created), SUM(submitted), MIN(at), MAX(at) FROM (
  SELECT 'tester' AS kind, author_name AS name, 1 AS bugs, 0 AS created, 0 AS submitted,
         reported_at AS at FROM bugs WHERE author_name IS NOT NULL AND {bug_scope}
  UNION ALL
  SELECT 'customer', created_by, 0, 1, 0, start_at FROM tests
   WHERE created_by IS NOT NULL AND {test_scope}
  UNION ALL
  SELECT 'customer', submitted_by, 0, 0, 1, start_at FROM tests
   WHERE submitted_by IS NOT NULL AND {test_scope}
) AS activity GROUP BY kind, name
"""
_USER_KEYS = (
    "kind",
    "name",
    "bugs_reported",
    "tests_created",
    "tests_submitted",
    "first_seen",
    "last_seen",
)


def _user_rows(product_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    """Every tester (bug author) and customer user (test creator or submitter) in scope.

    First and last seen are their activity dates: bug reports, or test starts.
    """
    if product_ids is None:
        sql, params = _USERS_SQL.format(bug_scope="1 = 1", test_scope="1 = 1"), []
    else:
        scope = f"product_id {backend.in_ids()}"
        sql = _USERS_SQL.format(bug_scope=scope, test_scope=scope)
        params = [json.dumps(list(product_ids))] * 3
    users = [dict(zip(_USER_KEYS, row, strict=True)) for row in _rows(sql, params)]
    for user in users:
        user["first_seen"], user["last_seen"] = _iso(user["first_seen"]), _iso(user["last_seen"])
    return users


def _activity(user: dict[str, Any]) -> int:
    return int(user["bugs_reported"] + user["tests_created"] + user["tests_submitted"])


@store_call("list users")
def list_users(
    *,
    kind: str | None = None,
    days: int | None = None,
    product_ids: Sequence[int] | None = None,
    sort_by: str = "activity",
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Testers and customer users with their activity; ``days`` keeps the recently active.

    Raises:
        UsageError: unknown kind or sort, bad days or page.
    """
    if kind is not None:
        _choice(kind, USER_KINDS, "kind")
    _choice(sort_by, USER_SORTS, "sort_by")
    _page(limit, offset)
    if days is not None and days < 1:
        raise UsageError("days must be 1 or more")
    users = [u for u in _user_rows(product_ids) if kind is None or u["kind"] == kind]
    if days is not None:
        cutoff = to_iso((now or utc_now()) - timedelta(days=days))
        users = [u for u in users if u["last_seen"] and u["last_seen"] >= cutoff]
    users.sort(key=lambda u: (u["name"], u["kind"]))
    if sort_by == "activity":
        users.sort(key=_activity, reverse=True)
    elif sort_by == "last_seen":
        users.sort(key=lambda u: u["last_seen"] or "", reverse=True)
    return {**_paged("users", users, limit, offset), "data_as_of": _as_of(product_ids)}


@store_call("read a user")
def user_summary(name: str) -> dict[str, Any]:
    """One user by name: activity per role, products, and their bugs' acceptance rates.

    Raises:
        UsageError: no stored bug or test names this user.
    """
    name = name.strip()
    roles = [u for u in _user_rows(None) if u["name"] == name]
    if not roles:
        raise UsageError(f"User {name!r} is not in the local cache; list_users shows names.")
    products = _rows(
        "SELECT product_id FROM bugs WHERE author_name = ? UNION"
        " SELECT product_id FROM tests WHERE created_by = ? OR submitted_by = ?"
        " ORDER BY 1",
        [name] * 3,
    )
    out: dict[str, Any] = {"name": name, "roles": roles, "product_ids": [p for (p,) in products]}
    if any(u["kind"] == "tester" for u in roles):
        out["bugs"] = _bug_counts("author_name = ?", [name])
    out["data_as_of"] = _as_of(out["product_ids"] or None)
    return out


# -- one bug, one product ------------------------------------------------------------------


def _steps(value: Any) -> list[str]:
    """A bug's steps: a list in the simulator, one string in the real API."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(step) for step in value]


@store_call("read a bug")
def bug_summary(bug_id: int) -> dict[str, Any]:
    """The whole bug: steps, results, devices, feature, test, reporter, bucket, comments.

    Raises:
        UsageError: the bug is not in the store.
    """
    found = _rows(
        "SELECT b.raw, b.status, b.auto_accepted, b.reject_reason, b.product_id, b.test_id,"
        " t.title, t.status, t.raw, p.name, t.bugs_synced_at, b.synced_at FROM bugs b"
        " JOIN tests t ON t.id = b.test_id LEFT JOIN products p ON p.id = b.product_id"
        " WHERE b.id = ?",
        [bug_id],
    )
    if not found:
        raise UsageError(
            f"Bug {bug_id} is not in the local cache; search or list_bugs shows bug ids."
        )
    raw_text, status, auto, reason, pid, tid, t_title, t_status, t_raw, p_name, *synced = found[0]
    raw = json.loads(raw_text)
    test_raw = json.loads(t_raw)
    feature = raw.get("feature") or {}
    return {
        "id": bug_id,
        "title": raw.get("title"),
        "severity": raw.get("severity"),
        "status": status_bucket(status, bool(auto)),
        "reject_reason": reason,
        "known": bool(raw.get("known")),
        "reported_at": raw.get("reported_at"),
        "reporter": (raw.get("author") or {}).get("name"),
        "steps": _steps(raw.get("steps")),
        "expected_result": raw.get("expected_result"),
        "actual_result": raw.get("actual_result"),
        "location": raw.get("location"),
        "language": raw.get("language"),
        "devices": raw.get("devices") or [],
        "platform": test_raw.get("requirements") or [],
        "feature": {"id": feature.get("id"), "title": feature.get("title")} if feature else None,
        "test": {"id": tid, "title": t_title, "status": t_status},
        "product": {"id": pid, "name": p_name},
        "comments": [
            {"author": (c.get("author") or {}).get("name"), "body": c.get("body")}
            for c in raw.get("comments") or []
        ],
        "data_as_of": to_iso(_parse(synced[0]) or _parse(synced[1])),
    }


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _iso(text: str | None) -> str | None:
    """A stored time as the answers show times (``...Z``, no microseconds)."""
    return to_iso(_parse(text))


@store_call("read a product")
def product_summary(product_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """A product's overview: sections, feature and test counts, recent tests, freshness.

    Raises:
        UsageError: the product is not in the store.
    """
    product = _product(product_id)
    now = now or utc_now()
    raw = product.raw or {}
    sections = raw.get("sections_with_default") or raw.get("sections") or []
    stamp = utc_text(now)
    since_30, since_90 = (utc_text(now - timedelta(days=d)) for d in (30, 90))
    (features,) = _rows("SELECT COUNT(*) FROM features WHERE product_id = ?", [product_id])[0]
    tests, last_30, last_90, last_end = _rows(
        "SELECT COUNT(*), COUNT(CASE WHEN end_at >= ? AND end_at <= ? THEN 1 END),"
        " COUNT(CASE WHEN end_at >= ? AND end_at <= ? THEN 1 END),"
        " MAX(CASE WHEN end_at <= ? THEN end_at END) FROM tests WHERE product_id = ?",
        [since_30, stamp, since_90, stamp, stamp, product_id],
    )[0]
    by_status = dict(
        _rows(
            "SELECT status, COUNT(*) FROM tests WHERE product_id = ? GROUP BY status ORDER BY 1",
            [product_id],
        )
    )
    return {
        "id": product.id,
        "name": product.name,
        "type": product.type,
        "description": product.description,
        "sections": [{"id": s.get("id"), "name": s.get("name")} for s in sections],
        "features": features,
        "tests": tests,
        "tests_by_status": by_status,
        "tests_ended_last_30_days": last_30 or 0,
        "tests_ended_last_90_days": last_90 or 0,
        "last_test_end": _iso(last_end),
        "bugs": _bug_counts("product_id = ?", [product_id]),
        "synced": {
            "product": to_iso(product.synced_at),
            "features": to_iso(product.features_synced_at),
            "tests": to_iso(product.tests_synced_at),
            "tests_complete": to_iso(product.tests_complete_at),
        },
        "data_as_of": _as_of([product_id]),
    }
