"""Reads of the local mirror, aggregated in SQL so reports stay fast on large caches.

Connection rule, shared with ``save.py``: every public function here runs inside
its own ``database.connection_context()``. Peewee 4.5 counts nested contexts, so a
caller that already holds one (``with db.connection_context():``) keeps its
connection and transaction; a caller without one gets a connection that is closed
on return. Do not mix with a bare ``db.connect()``: the inner context would close
that connection. Peewee and SQLite errors leave this package as ``StoreError``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from peewee import JOIN, SQL, Case, Expression, NodeList, PeeweeException, fn

from testio_sync.errors import StoreError
from testio_sync.settings import Settings
from testio_sync.store import backend, failures, search_index
from testio_sync.store.db import explain
from testio_sync.store.models import (
    BrokenTest,
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    SyncMetadata,
    User,
    database,
)
from testio_sync.store.normalize import UNFETCHED_STATUSES

P = ParamSpec("P")
R = TypeVar("R")

STATUS_BUCKETS = ("active_accepted", "auto_accepted", "rejected", "open", "unknown")
"""A bug's status bucket, the one definition every read uses (see ``status_bucket``)."""
_BUCKET_RULES: tuple[tuple[str, str, bool | None], ...] = (
    # bucket, API status, auto_accepted (None: either)
    ("active_accepted", "accepted", False),
    ("auto_accepted", "accepted", True),
    ("rejected", "rejected", None),
    ("open", "forwarded", None),
)
UNKNOWN_BUCKET = "unknown"


def store_call(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the function in a connection context; turn database errors into StoreError."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if database.obj is None:
                raise StoreError(f"Cannot {action}: the database is not open (open_database).")
            try:
                with database.connection_context():
                    return func(*args, **kwargs)
            except StoreError:
                raise
            except (PeeweeException, sqlite3.Error) as exc:
                reason = failures.describe(exc, database.database)
                kind = failures.DiskFullError if failures.is_full(exc) else StoreError
                raise kind(explain(f"Cannot {action}: {reason}")) from exc

        return wrapper

    return decorate


def id_in(column: Any, ids: Iterable[int]) -> NodeList:
    """``column IN (ids)`` with one bound JSON parameter, whatever the number of ids.

    SQLite caps bound variables per statement; ``json_each`` keeps every id list a
    single parameter, so callers never chunk reads or deletes.
    """
    return NodeList((column, SQL(backend.in_ids(), [json.dumps(list(ids))])))


def raw_text(column: Any) -> Any:
    """Select a JSON column as its stored text (no decode: compared as a string)."""
    return column.cast("TEXT")


@store_call("read sync metadata")
def get_metadata(key: str) -> str | None:
    row = SyncMetadata.get_or_none(SyncMetadata.key == key)
    return None if row is None else row.value


@store_call("count stored entities")
def entity_counts(product_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Rows per entity; with ``product_ids``, users are those products' customers and testers."""
    if product_ids is None:
        return {
            "products": Product.select().count(),
            "features": Feature.select().count(),
            "tests": ExploratoryTest.select().count(),
            "bugs": Bug.select().count(),
            "users": User.select().count(),
        }
    ids, in_ids = json.dumps(list(product_ids)), backend.in_ids()
    scope = f"product_id {in_ids}"
    sql = (
        f"SELECT (SELECT COUNT(*) FROM products WHERE id {in_ids}),"
        f" (SELECT COUNT(*) FROM features WHERE {scope}),"
        f" (SELECT COUNT(*) FROM tests WHERE {scope}),"
        f" (SELECT COUNT(*) FROM bugs WHERE {scope}),"
        " (SELECT COUNT(*) FROM ("
        f"   SELECT 'customer', created_by FROM tests WHERE {scope} AND created_by IS NOT NULL"
        f"   UNION SELECT 'customer', submitted_by FROM tests WHERE {scope}"
        "      AND submitted_by IS NOT NULL"
        f"   UNION SELECT 'tester', author_name FROM bugs WHERE {scope}"
        "      AND author_name IS NOT NULL) AS people)"
    )
    row = backend.execute(sql, [ids] * 7).fetchone()
    return dict(zip(("products", "features", "tests", "bugs", "users"), row, strict=True))


@store_call("list products")
def list_products() -> list[Product]:
    return list(Product.select().order_by(Product.name, Product.id))


@store_call("read a product")
def find_product(product_id: int) -> Product | None:
    return Product.get_or_none(Product.id == product_id)


@store_call("list product ids")
def product_ids() -> list[int]:
    return [pid for (pid,) in Product.select(Product.id).order_by(Product.id).tuples()]


@store_call("read product sync times")
def product_sync_times() -> dict[int, datetime | None]:
    """Each stored product's id and when it was last fetched itself."""
    return dict(Product.select(Product.id, Product.synced_at).tuples())


@store_call("list stored tests")
def stored_test_ids(product_id: int) -> set[int]:
    query = ExploratoryTest.select(ExploratoryTest.id).where(ExploratoryTest.product == product_id)
    return {tid for (tid,) in query.tuples()}


def _test_scope(
    product_ids: Sequence[int] | None, test_ids: Sequence[int] | None
) -> list[Expression | NodeList]:
    where: list[Expression | NodeList] = []
    if product_ids is not None:
        where.append(id_in(ExploratoryTest.product, product_ids))
    if test_ids is not None:
        where.append(id_in(ExploratoryTest.id, test_ids))
    return where


def _all(conditions: Sequence[Expression | NodeList]) -> Any:
    return functools.reduce(lambda a, b: a & b, conditions) if conditions else SQL("1 = 1")


@store_call("select tests needing bugs")
def tests_needing_bugs(
    *,
    product_ids: Sequence[int] | None,
    since: datetime | None,
    ttl_s: int,
    now: datetime,
    test_ids: Sequence[int] | None = None,
) -> list[int]:
    """Tests in scope whose bug list must be (re)fetched, newest end first.

    The one staleness rule for bugs (the sync and the read-through both ask here).
    Due: bugs not final, and never fetched or fetched at least ``ttl_s`` ago;
    except a test not started yet (initialized, waiting) whose own row is younger
    than ``ttl_s``: it had no bugs when last seen. Its stored status alone is no
    reason to skip it, as that status may be old and the test running by now.
    ``since`` keeps tests that end on or after it, or have no end.
    """
    T = ExploratoryTest
    cutoff = now - timedelta(seconds=ttl_s)
    not_started = T.status.in_(sorted(UNFETCHED_STATUSES)) & (T.synced_at > cutoff)
    stale = (T.bugs_synced_at <= cutoff) & ~not_started
    where = [*_test_scope(product_ids, test_ids), T.bugs_final == 0]
    where.append(T.bugs_synced_at.is_null() | stale)
    if since is not None:
        where.append((T.end_at >= since) | T.end_at.is_null())
    query = T.select(T.id).where(_all(where)).order_by(T.end_at.desc(nulls="first"), T.id.desc())
    return [tid for (tid,) in query.tuples()]


@store_call("list tests")
def list_tests(
    *,
    product_ids: Sequence[int] | None = None,
    statuses: Sequence[str] | None = None,
    testing_type: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    test_ids: Sequence[int] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ExploratoryTest], int]:
    """One page of tests, newest end first (not ended first), and the total in scope.

    ``start``/``end`` bound ``end_at`` to ``[start, end)``; a test without an end
    passes ``start`` (it is still running) but not ``end``.
    """
    T = ExploratoryTest
    where = _test_scope(product_ids, test_ids)
    if statuses is not None:
        where.append(T.status.in_(list(statuses)))
    if testing_type is not None:
        where.append(T.testing_type == testing_type)
    if start is not None:
        where.append((T.end_at >= start) | T.end_at.is_null())
    if end is not None:
        where.append(T.end_at < end)
    query = T.select().where(_all(where))
    total = query.count()
    page = query.order_by(T.end_at.desc(nulls="first"), T.id.desc()).limit(limit).offset(offset)
    return list(page), total


@store_call("read a test")
def get_test(test_id: int) -> ExploratoryTest | None:
    """The stored test, or None (the sync engine treats absence as "not seen yet")."""
    return ExploratoryTest.get_or_none(ExploratoryTest.id == test_id)


def _empty_counts() -> dict[str, Any]:
    return {"total": 0, "by_status": dict.fromkeys(STATUS_BUCKETS, 0), "by_severity": {}}


def status_bucket(status: str | None, auto_accepted: bool) -> str:
    """Bucket of a bug: accepted splits into active and auto, forwarded is open.

    A missing or unrecognised status is ``unknown``: never counted as open.
    """
    for bucket, api_status, auto in _BUCKET_RULES:
        if status == api_status and (auto is None or auto == bool(auto_accepted)):
            return bucket
    return UNKNOWN_BUCKET


def bucket_condition(bucket: str, status: Any, auto_accepted: Any) -> Expression:
    """The SQL condition of one bucket over a bug's status and auto_accepted columns.

    Raises:
        ValueError: not a bucket name.
    """
    if bucket == UNKNOWN_BUCKET:
        known = sorted({api_status for _, api_status, _ in _BUCKET_RULES})
        return status.is_null() | status.not_in(known)
    for name, api_status, auto in _BUCKET_RULES:
        if name == bucket:
            condition = status == api_status
            return condition if auto is None else condition & (auto_accepted == int(auto))
    raise ValueError(f"unknown bug status bucket {bucket!r}")


def bucket_case(status: Any, auto_accepted: Any) -> Case:
    """The bucket name of a bug as a SQL CASE (the SQL twin of ``status_bucket``)."""
    rules = [(bucket_condition(b, status, auto_accepted), b) for b, _, _ in _BUCKET_RULES]
    return Case(None, rules, UNKNOWN_BUCKET)


@store_call("count bugs per test")
def bug_counts_by_test(
    test_ids: Sequence[int] | None = None, *, product_ids: Sequence[int] | None = None
) -> dict[int, dict[str, Any]]:
    """Per test: ``total``, ``by_status`` (the five buckets) and ``by_severity``.

    Every asked-for test id is present, with zeros when it has no stored bugs.
    """
    where: list[Expression | NodeList] = []
    if test_ids is not None:
        where.append(id_in(Bug.test, test_ids))
    if product_ids is not None:
        where.append(id_in(Bug.product_id, product_ids))
    query = (
        Bug.select(Bug.test, Bug.status, Bug.auto_accepted, Bug.severity, fn.COUNT(Bug.id))
        .where(_all(where))
        .group_by(Bug.test, Bug.status, Bug.auto_accepted, Bug.severity)
    )
    out: dict[int, dict[str, Any]] = {tid: _empty_counts() for tid in test_ids or ()}
    # Plain cursor rows: peewee's per-row conversion doubled the time on 80k bugs.
    for test_id, status, auto, severity, count in database.execute_sql(*query.sql()):
        entry = out.setdefault(test_id, _empty_counts())
        entry["total"] += count
        entry["by_status"][status_bucket(status, bool(auto))] += count
        key = severity or "unknown"
        entry["by_severity"][key] = entry["by_severity"].get(key, 0) + count
    return out


@store_call("list bugs")
def list_bugs(
    *,
    test_ids: Sequence[int] | None = None,
    product_ids: Sequence[int] | None = None,
    statuses: Sequence[str] | None = None,
    severities: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Bug], int]:
    """One page of bugs, newest report first, and the total in scope."""
    where: list[Expression | NodeList] = []
    if test_ids is not None:
        where.append(id_in(Bug.test, test_ids))
    if product_ids is not None:
        where.append(id_in(Bug.product_id, product_ids))
    if statuses is not None:
        where.append(Bug.status.in_(list(statuses)))
    if severities is not None:
        where.append(Bug.severity.in_(list(severities)))
    query = Bug.select().where(_all(where))
    total = query.count()
    page = query.order_by(Bug.reported_at.desc(nulls="last"), Bug.id.desc())
    return list(page.limit(limit).offset(offset)), total


@store_call("list broken tests")
def list_broken_tests(
    product_id: int | None = None, *, unresolved_only: bool = True
) -> list[BrokenTest]:
    query = BrokenTest.select()
    if product_id is not None:
        query = query.where(BrokenTest.product_id == product_id)
    if unresolved_only:
        query = query.where(BrokenTest.resolved_at.is_null())
    return list(query.order_by(BrokenTest.product_id, BrokenTest.position, BrokenTest.id))


@store_call("read data freshness")
def oldest_sync_time(product_ids: Sequence[int] | None = None) -> datetime | None:
    """When the least fresh product's test list was last walked (the report's "as of").

    None when the scope has no product, or one whose tests were never synced:
    then no point in time covers all of its data.
    """
    query = Product.select(Product.tests_synced_at)
    if product_ids is not None:
        query = query.where(id_in(Product.id, product_ids))
    times = [t for (t,) in query.tuples()]
    if not times or any(t is None for t in times):
        return None
    return min(times)


@store_call("read product freshness")
def product_freshness() -> list[dict[str, Any]]:
    """Per product: id, name, its three sync times and how many tests are stored."""
    count = fn.COUNT(ExploratoryTest.id)
    query = (
        Product.select(
            Product.id,
            Product.name,
            Product.synced_at,
            Product.features_synced_at,
            Product.tests_synced_at,
            count.alias("test_count"),
        )
        .join(ExploratoryTest, JOIN.LEFT_OUTER, on=ExploratoryTest.product == Product.id)
        .group_by(Product.id)
        .order_by(Product.id)
    )
    keys = ("id", "name", "synced_at", "features_synced_at", "tests_synced_at", "test_count")
    return [dict(zip(keys, row, strict=True)) for row in query.tuples()]


def db_file_size(path: Path) -> int:
    """Bytes on disk of the database, its write-ahead log included (0 if absent)."""
    total = 0
    base = Path(path)
    for candidate in (base, base.with_name(base.name + "-wal")):
        try:
            total += candidate.stat().st_size
        except FileNotFoundError:
            continue
    return total


def store_bytes(settings: Settings) -> int:
    """Bytes the mirror takes: the SQLite file and its log, or the PostgreSQL tables.

    On PostgreSQL the models must be bound to it (``open_store``).
    """
    if settings.database_url is None:
        return db_file_size(settings.db_path)
    from testio_sync.store.postgres import relation_bytes

    return relation_bytes(database.obj)


@store_call("check the search index")
def check_search_index() -> search_index.IndexCheck:
    """Compare the full-text index with the rows it must hold (``status --check``).

    Under the write lock: a sync committing between the reads would look like drift,
    and FTS5's integrity check is itself a write statement.
    """
    with backend.write_transaction():
        return search_index.check(database)
