"""Idempotent upserts of API payloads, each call one short transaction.

Every ``save_*`` is keyed by the TestIO id, so re-running a page after a crash
converges on the same rows. A call reads the stored raw texts it needs in one
SELECT, writes each table with one prepared statement and commits once, so other
writers wait for one short transaction at most (WAL readers never wait). ``now``
is always passed in (no hidden clock): a run stamps every row with one time.
Connection and error rules are those of ``queries.py``: each function opens its
own connection context and raises ``StoreError`` for database failures.

Write transactions are ``backend.write_transaction``: SQLite's IMMEDIATE (a deferred
one that reads first and then writes fails at once when another connection wrote
meanwhile), or PostgreSQL's with the mirror's write lock taken first.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from peewee import Case, Field

from testio_sync.errors import StoreError
from testio_sync.store import backend, search_index
from testio_sync.store import normalize as nz
from testio_sync.store.models import (
    BaseModel,
    BrokenTest,
    Bug,
    ExploratoryTest,
    Feature,
    Product,
    SyncMetadata,
    TestFeature,
    User,
    database,
)
from testio_sync.store.queries import id_in, raw_text, store_call

log = logging.getLogger(__name__)

P, F, T, TF, B = Product, Feature, ExploratoryTest, TestFeature, Bug
Row = tuple[Any, ...]
TOUCHABLE = ("features_synced_at", "tests_synced_at", "tests_complete_at")
# On a test update, bugs stay final only while the new status is final too.
_KEEP_FINAL = (
    ', "bugs_final" = CASE WHEN excluded."status" IN ({})'
    ' THEN "tests"."bugs_final" ELSE 0 END'.format(
        ", ".join(f"'{s}'" for s in sorted(nz.FINAL_STATUSES))
    )
)


@dataclasses.dataclass
class SaveCounts:
    """What one save call did, by TestIO id.

    ``updated`` means stored before and its content changed; ``deleted_ids`` are
    rows removed because the API no longer lists them; ``skipped_ids`` are inputs
    that could not be stored (a bug list for a test that is not stored).
    """

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    new_ids: list[int] = dataclasses.field(default_factory=list)
    updated_ids: list[int] = dataclasses.field(default_factory=list)
    deleted_ids: list[int] = dataclasses.field(default_factory=list)
    skipped_ids: list[int] = dataclasses.field(default_factory=list)

    def classify(self, entity_id: int, old_text: str | None, new_text: str) -> None:
        if old_text is None:
            self.new += 1
            self.new_ids.append(entity_id)
        elif old_text != new_text:
            self.updated += 1
            self.updated_ids.append(entity_id)
        else:
            self.unchanged += 1


def _upsert(
    model: type[BaseModel], fields: list[Field], rows: Sequence[Row], *, also: str = ""
) -> None:
    """Insert DB-ready rows; on an id clash overwrite every given column but the key.

    ``ON CONFLICT DO UPDATE`` keeps the row (unlike ``REPLACE``, which deletes it
    and cascades to bugs and test features) and leaves unlisted columns alone.
    One prepared statement through ``executemany``: building peewee SQL per chunk
    cost more than the writes. ``also`` appends SET clauses.
    """
    if not rows:
        return
    cols = [f.column_name for f in fields]
    key = model._meta.primary_key.column_name
    names = ", ".join(f'"{c}"' for c in cols)
    marks = ", ".join("?" for _ in cols)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in cols if c != key) + also
    sql = (
        f'INSERT INTO "{model._meta.table_name}" ({names}) VALUES ({marks})'
        f' ON CONFLICT ("{key}") DO UPDATE SET {sets}'
    )
    backend.execute_many(sql, rows)


def _stored_texts(model: type[BaseModel], ids: Iterable[int]) -> dict[int, str]:
    query = model.select(model._meta.primary_key, raw_text(model.raw)).where(
        id_in(model._meta.primary_key, ids)
    )
    return dict(query.tuples())


def _require_product(product_id: int) -> None:
    if not P.select().where(P.id == product_id).exists():
        raise StoreError(f"Product {product_id} is not stored; save the products first.")


def _save_users(kind: str, names: Iterable[str], now: datetime) -> None:
    """Record these users as seen at ``now``: one statement for the whole list.

    One row per statement (``executemany``) cost a statement per tester and per
    bug batch on a server; the names travel as one JSON list instead.
    """
    unique = sorted(set(names))
    if not unique:
        return
    stamp = nz.utc_text(now)
    backend.execute(
        'INSERT INTO "users" ("kind", "name", "first_seen_at", "last_seen_at")'
        f" SELECT ?, value, ?, ? FROM {backend.text_list()} AS names WHERE true"
        # (``WHERE true``: SQLite reads ``ON CONFLICT`` after a bare FROM as a join clause.)
        ' ON CONFLICT ("kind", "name") DO UPDATE SET "last_seen_at" = excluded."last_seen_at"'
        # A user already stamped with this time keeps its row: no new row version.
        ' WHERE "users"."last_seen_at" <> excluded."last_seen_at"',
        [kind, stamp, stamp, json.dumps(unique)],
    )


def _by_id(items: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Last payload per id: a list that repeats an id must not count it twice."""
    return {item["id"]: item for item in items}


@store_call("save products")
def save_products(products: list[dict[str, Any]], *, now: datetime) -> SaveCounts:
    """Upsert products; their features and tests sync times are left as they are."""
    counts, items = SaveCounts(), _by_id(products)
    with backend.write_transaction():
        old = _stored_texts(P, items)
        rows = []
        for pid, product in items.items():
            row, text = nz.product_row(product, now)
            counts.classify(pid, old.get(pid), text)
            rows.append(row)
        _upsert(P, nz.PRODUCT_FIELDS, rows)
        _index("product", nz.PRODUCT_FIELDS, rows, counts.new_ids + counts.updated_ids)
    return counts


def _feature_key(raw: str, section_ids: Iterable[int]) -> str:
    """Content of a feature for change detection: its raw text and its sections."""
    return f"{raw}|{nz.canonical_json(sorted(section_ids))}"


@store_call("save features")
def save_features(product_id: int, features: list[dict[str, Any]], *, now: datetime) -> SaveCounts:
    """Make the product's stored features exactly ``features`` and stamp the product.

    Each feature may carry ``section_ids`` (set by the caller); a change of
    sections counts as an update like a change of content.

    Raises:
        StoreError: the product is not stored.
    """
    counts, items = SaveCounts(), _by_id(features)
    with backend.write_transaction():
        _require_product(product_id)
        query = F.select(F.id, F.product, raw_text(F.raw), raw_text(F.section_ids)).where(
            id_in(F.id, items) | (F.product == product_id)
        )
        old: dict[int, str] = {}
        mine: set[int] = set()
        for fid, owner, raw, sections in query.tuples():
            old[fid] = _feature_key(raw, json.loads(sections or "[]"))
            if owner == product_id:
                mine.add(fid)
        rows = []
        for fid, feature in items.items():
            row, text, section_ids = nz.feature_row(product_id, feature, now)
            counts.classify(fid, old.get(fid), _feature_key(text, section_ids))
            rows.append(row)
        _upsert(F, nz.FEATURE_FIELDS, rows)
        gone = sorted(mine - items.keys())
        if gone:
            F.delete().where(id_in(F.id, gone)).execute()
        counts.deleted_ids = gone
        search_index.forget(database, "feature", gone)
        _index("feature", nz.FEATURE_FIELDS, rows, counts.new_ids + counts.updated_ids)
        P.update(features_synced_at=now).where(P.id == product_id).execute()
    return counts


@store_call("save tests")
def save_tests(product_id: int, tests: list[dict[str, Any]], *, now: datetime) -> SaveCounts:
    """Upsert tests, replace the test features of new or changed ones, record customers.

    ``bugs_synced_at`` is kept; ``bugs_final`` survives only while the status stays
    final, so a test that leaves a final status has its bugs fetched again.

    Raises:
        StoreError: the product is not stored.
    """
    counts, items = SaveCounts(), _by_id(tests)
    with backend.write_transaction(pipelined=True):  # reads, then writes only
        _require_product(product_id)
        old = _stored_texts(T, items)
        rows, changed, customers = [], [], set()
        for tid, test in items.items():
            row, text = nz.test_row(product_id, test, now)
            counts.classify(tid, old.get(tid), text)
            if old.get(tid) != text:
                changed.append(tid)
            rows.append(row)
            customers |= nz.customer_names(test)
        _upsert(T, nz.TEST_FIELDS, rows, also=_KEEP_FINAL)
        if changed:
            # Test features derive from the test's raw: unchanged tests keep theirs.
            TF.delete().where(id_in(TF.test, changed)).execute()
            tf_rows = [r for tid in changed for r in nz.test_feature_rows(items[tid])]
            _upsert(TF, nz.TEST_FEATURE_FIELDS, tf_rows)
        _save_users("customer", customers, now)
        _index("test", nz.TEST_FIELDS, rows, changed, items)
    return counts


@store_call("save bugs")
def save_bugs(
    test_ids: Sequence[int],
    bugs_by_test: Mapping[int, list[dict[str, Any]]],
    *,
    now: datetime,
    reject_reasons: Mapping[str, str] | None = None,
) -> SaveCounts:
    """Make each test's stored bugs exactly its listed bugs; stamp the tests.

    ``bugs_by_test`` holds the complete bug list of every id in ``test_ids`` (a
    missing key means "no bugs"). ``reject_reasons`` maps a reason's default
    comment to its key. Ids whose test is not stored land in ``skipped_ids``.
    A test's bugs become final when fetched while its status is final.
    """
    counts = SaveCounts()
    matcher = nz.reason_matcher(reject_reasons)
    wanted = list(dict.fromkeys(test_ids))
    with backend.write_transaction(pipelined=True):  # one read, then writes only
        owners, stored = _tests_and_bugs(wanted, bugs_by_test)
        counts.skipped_ids = [tid for tid in wanted if tid not in owners]
        if counts.skipped_ids:
            log.warning("bugs of unknown tests not stored: %s", counts.skipped_ids[:20])
        tests = [tid for tid in wanted if tid in owners]
        rows: dict[int, tuple[Row, str]] = {}
        payloads: dict[int, dict[str, Any]] = {}
        testers: set[str] = set()
        for tid in tests:
            for bug in bugs_by_test.get(tid) or []:
                if bug["id"] in rows:
                    continue  # the API files a bug under one test; ignore a repeat
                rows[bug["id"]] = nz.bug_row(tid, owners[tid], bug, matcher, now)
                payloads[bug["id"]] = bug
                if name := nz.author_name(bug):
                    testers.add(name)
        old: dict[int, str] = {}
        stale: list[int] = []
        for bid, test_id, text in stored:
            if bid in rows:
                old[bid] = text
            elif test_id in owners:  # a stored bug its test no longer lists
                stale.append(bid)
        for bid, (_, text) in rows.items():
            counts.classify(bid, old.get(bid), text)
        counts.deleted_ids = sorted(stale)
        # Unchanged bugs are not rewritten: their freshness lives on the test
        # (``bugs_synced_at``), so a bug's ``synced_at`` is when its content last changed.
        fresh = [row for bid, (row, text) in rows.items() if old.get(bid) != text]
        if stale:
            B.delete().where(id_in(B.id, stale)).execute()
        search_index.forget(database, "bug", stale)
        _upsert(B, nz.BUG_FIELDS, fresh)
        _save_users("tester", testers, now)
        _index("bug", nz.BUG_FIELDS, fresh, [row[0] for row in fresh], payloads)
        final = Case(None, [(T.status.in_(sorted(nz.FINAL_STATUSES)), 1)], 0)
        T.update(bugs_synced_at=now, bugs_final=final).where(id_in(T.id, tests)).execute()
    return counts


def _tests_and_bugs(
    test_ids: list[int], bugs_by_test: Mapping[int, list[dict[str, Any]]]
) -> tuple[dict[int, int], list[tuple[int, int, str]]]:
    """The stored tests among ``test_ids`` (id to product) and the stored bugs that
    either belong to them or carry an id listed for them: (id, test id, raw text).

    One statement: on a server every statement is a round trip.
    """
    listed = {bug["id"] for tid in test_ids for bug in bugs_by_test.get(tid) or []}
    params = [json.dumps(test_ids), json.dumps(test_ids), json.dumps(sorted(listed))]
    in_ids = backend.in_ids()
    cursor = backend.execute(
        f'SELECT 0, "id", "product_id", NULL FROM "tests" WHERE "id" {in_ids}'
        ' UNION ALL SELECT 1, "id", "test_id", CAST("raw" AS TEXT) FROM "bugs"'
        f' WHERE "test_id" {in_ids} OR "id" {in_ids}',
        params,
    )
    owners: dict[int, int] = {}
    stored: list[tuple[int, int, str]] = []
    for kind, eid, ref, text in cursor.fetchall():
        if kind == 0:
            owners[eid] = ref
        else:
            stored.append((eid, ref, text))
    return owners, stored


def _index(
    entity: str,
    fields: list[Field],
    rows: Sequence[Row],
    ids: Iterable[int],
    payloads: Mapping[int, dict[str, Any]] | None = None,
) -> None:
    """Index the rows a save created or changed (``ids``); unchanged rows keep their documents.

    Documents come from the DB-ready rows and the payloads already parsed: the
    same ``search_index.document`` that rebuilds the index from stored rows.
    """
    wanted = set(ids)
    names = [f.column_name for f in fields]
    read = [(c, names.index(c)) for c in search_index.COLUMNS_READ[entity] if c != "raw"]
    docs = [
        search_index.document(
            entity, {c: row[i] for c, i in read}, payloads[row[0]] if payloads else None
        )
        for row in rows
        if row[0] in wanted
    ]
    search_index.index(database, docs)


def _forget_products(ids: list[int]) -> None:
    """Drop the documents of everything a scoped wipe deletes (before it deletes it)."""
    scope, in_ids = [json.dumps(ids)], backend.id_list()
    tests = f"(SELECT id FROM tests WHERE product_id IN {in_ids})"
    search_index.forget_where(
        database, "bug", f"product_id IN {in_ids} OR test_id IN {tests}", scope * 2
    )
    for entity in ("test", "feature"):
        search_index.forget_where(database, entity, f"product_id IN {in_ids}", scope)
    search_index.forget(database, "product", ids)


def _delete_tests(test_ids: Sequence[int]) -> int:
    # Children first, explicitly: correct even on a connection without foreign_keys=ON.
    search_index.forget_where(
        database, "bug", f"test_id IN {backend.id_list()}", [json.dumps(list(test_ids))]
    )
    search_index.forget(database, "test", test_ids)
    B.delete().where(id_in(B.test, test_ids)).execute()
    TF.delete().where(id_in(TF.test, test_ids)).execute()
    return int(T.delete().where(id_in(T.id, test_ids)).execute())


@store_call("delete tests")
def delete_tests(test_ids: Sequence[int]) -> int:
    """Remove tests with their bugs and test features; returns how many tests went."""
    ids = sorted(set(test_ids))
    if not ids:
        return 0
    with backend.write_transaction():
        return _delete_tests(ids)


@store_call("remove unlisted tests")
def delete_missing_tests(product_id: int, listed_ids: set[int]) -> list[int]:
    """After a complete walk, remove the product's stored tests the API did not list."""
    with backend.write_transaction():
        stored = {tid for (tid,) in T.select(T.id).where(T.product == product_id).tuples()}
        gone = sorted(stored - set(listed_ids))
        if gone:
            _delete_tests(gone)
    return gone


@store_call("record a broken test")
def record_broken_test(
    product_id: int,
    position: int,
    prev_test_id: int | None,
    prev_end_at: datetime | str | None,
    next_test_id: int | None,
    next_end_at: datetime | str | None,
    *,
    now: datetime,
) -> None:
    """Remember a test that fails its page even alone, by its neighbours; reopen it if seen."""
    values = {
        BrokenTest.position: position,
        BrokenTest.prev_end_at: nz.as_utc(prev_end_at),
        BrokenTest.next_end_at: nz.as_utc(next_end_at),
        BrokenTest.last_seen_at: now,
        BrokenTest.resolved_at: None,
    }
    pair = {
        BrokenTest.product_id: product_id,
        BrokenTest.prev_test_id: prev_test_id,
        BrokenTest.next_test_id: next_test_id,
    }
    # NULLs never clash in a UNIQUE index, so no ON CONFLICT: "== None" matches IS NULL.
    where = functools.reduce(operator.and_, [column == value for column, value in pair.items()])
    with backend.write_transaction():
        if BrokenTest.update(values).where(where).execute() == 0:
            BrokenTest.insert({**values, **pair, BrokenTest.first_seen_at: now}).execute()


@store_call("resolve broken tests")
def resolve_broken_tests(
    product_id: int, still_broken: Iterable[tuple[int | None, int | None]], *, now: datetime
) -> int:
    """Mark the product's open broken tests resolved unless their neighbours are in
    ``still_broken``; returns how many were resolved."""
    keep = set(still_broken)
    with backend.write_transaction():
        open_rows = BrokenTest.select(
            BrokenTest.id, BrokenTest.prev_test_id, BrokenTest.next_test_id
        ).where((BrokenTest.product_id == product_id) & BrokenTest.resolved_at.is_null())
        done = [bid for bid, prev, nxt in open_rows.tuples() if (prev, nxt) not in keep]
        if done:
            BrokenTest.update(resolved_at=now).where(id_in(BrokenTest.id, done)).execute()
    return len(done)


@store_call("wipe the cache")
def wipe(product_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Delete everything mirrored (with users and ``last_sync_completed``; run history
    stays), or only the given products' rows (users stay). Returns rows deleted per table.
    """
    counts: dict[str, int] = {}
    with backend.write_transaction():
        if product_ids is None:
            search_index.forget_all(database)
            for model in (B, TF, T, F, BrokenTest, P, User):  # children first
                counts[model._meta.table_name] = int(model.delete().execute())
            counts["sync_metadata"] = int(
                SyncMetadata.delete().where(SyncMetadata.key == "last_sync_completed").execute()
            )
            return counts
        ids = sorted(set(product_ids))
        tests = T.select(T.id).where(id_in(T.product, ids))
        scoped = (
            (B, id_in(B.product_id, ids) | B.test.in_(tests)),
            (TF, TF.test.in_(tests)),
            (T, id_in(T.product, ids)),
            (F, id_in(F.product, ids)),
            (BrokenTest, id_in(BrokenTest.product_id, ids)),
            (P, id_in(P.id, ids)),
        )
        _forget_products(ids)
        for model, where in scoped:  # children first
            counts[model._meta.table_name] = int(model.delete().where(where).execute())
    return counts


@store_call("write sync metadata")
def set_metadata(key: str, value: str | None, *, now: datetime) -> None:
    with backend.write_transaction():
        SyncMetadata.insert(key=key, value=value, updated_at=now).on_conflict(
            conflict_target=[SyncMetadata.key],
            preserve=[SyncMetadata.value, SyncMetadata.updated_at],
        ).execute()


@store_call("write sync metadata")
def ensure_metadata(key: str, value: str, *, now: datetime) -> str:
    """Store ``value`` under ``key`` unless a value is there; return the stored one.

    The first writer wins, so two processes recording at once agree on one value.
    """
    with backend.write_transaction():
        SyncMetadata.insert(key=key, value=value, updated_at=now).on_conflict_ignore().execute()
        return str(SyncMetadata.get(SyncMetadata.key == key).value)


@store_call("stamp a product")
def touch_product(product_id: int, *, now: datetime, field: str) -> None:
    """Set one of the product's sync times (``features_synced_at``, ``tests_synced_at``,
    ``tests_complete_at``).

    Raises:
        ValueError: ``field`` is not one of those.
        StoreError: the product is not stored.
    """
    if field not in TOUCHABLE:
        raise ValueError(f"touch_product field must be one of {TOUCHABLE}, not {field!r}")
    with backend.write_transaction():
        if P.update({getattr(P, field): now}).where(P.id == product_id).execute() == 0:
            raise StoreError(f"Product {product_id} is not stored; save the products first.")


@store_call("rebuild the search index")
def rebuild_search_index() -> None:
    """Index every stored row again, in one transaction (``status --check --repair``)."""
    with backend.write_transaction():
        search_index.rebuild(database)
