"""The full-text index over products, features, tests and bugs (SQLite FTS5, PostgreSQL).

Two tables. ``search_docs`` holds one document per entity: its index key
(``rowid = id * 4 + kind``), entity, id, product, date and the indexed text.
``search_fts`` is an *external-content* FTS5 table over ``search_docs``: the
words are indexed once, snippets read the text from ``search_docs``, and the
old text an FTS5 delete needs is always at hand there (a contentless table would
need the old text from elsewhere and could not make snippets).

One function, ``document``, turns a row (its columns and its parsed raw payload)
into its document. The save functions call it on the rows they write, inside
their transaction (``index``/``forget``, no triggers); ``rebuild`` (the schema
migration, a restore) and ``check`` call it on the stored rows, so every path
yields the same text. Python builds the text: SQLite's JSON functions parse a
payload once per call, and made the index cost three times as much to keep.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from testio_sync.store import backend

KINDS = {"product": 0, "feature": 1, "test": 2, "bug": 3}
ENTITIES = tuple(KINDS)
Doc = tuple[int, str, int, int | None, str | None, str, str]

# Per entity: its table, and the stored columns its document reads (``raw`` parsed).
TABLES = {"product": "products", "feature": "features", "test": "tests", "bug": "bugs"}
COLUMNS_READ = {
    "product": ("id", "name", "description"),
    "feature": ("id", "product_id", "title", "description", "howtofind", "user_stories"),
    "test": ("id", "product_id", "title", "end_at", "raw"),
    "bug": ("id", "product_id", "title", "reported_at", "raw"),
}


def _text(parts: Iterable[Any]) -> str:
    """Non-empty parts, one per line (lists of strings come flattened by the caller)."""
    return "\n".join([p if isinstance(p, str) else str(p) for p in parts if p])


def _lines(value: Any) -> list[Any]:
    """A list of strings, or one string (a bug's steps in the real API), as lines."""
    return value if isinstance(value, list) else [value]


def document(entity: str, row: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> Doc:
    """The indexed form of one row: key, entity, id, product, date, title, body.

    ``row`` maps the columns of ``COLUMNS_READ`` to their stored values; ``raw``
    is the parsed payload (tests and bugs read their texts from it). Called once
    per written row during a sync, so it stays plain.
    """
    eid, raw = int(row["id"]), raw or {}
    key = eid * 4 + KINDS[entity]
    if entity == "bug":
        body = _text(
            [*_lines(raw.get("steps")), raw.get("actual_result"), raw.get("expected_result")]
        )
        return (key, entity, eid, row["product_id"], row["reported_at"], row["title"] or "", body)
    if entity == "test":
        # A test text field: its plain-text twin, else the markdown one.
        body = _text(
            raw.get(f"{k}_text") or raw.get(k) for k in ("goal", "instructions", "out_of_scope")
        )
        return (key, entity, eid, row["product_id"], row["end_at"], row["title"] or "", body)
    if entity == "feature":
        stories = row["user_stories"]
        stories = json.loads(stories) if isinstance(stories, str) else stories
        body = _text([row["description"], row["howtofind"], *_lines(stories)])
        return (key, entity, eid, row["product_id"], None, row["title"] or "", body)
    return (key, entity, eid, eid, None, row["name"] or "", _text([row["description"]]))


def stored_documents(conn: Any, entity: str) -> Iterator[Doc]:
    """The documents of every stored row of ``entity``, from its columns and raw."""
    cols = COLUMNS_READ[entity]
    names = ", ".join(f'"{c}"' for c in cols)
    rows = _cursor(conn)
    rows.execute(f'SELECT {names} FROM "{TABLES[entity]}"')
    for values in rows:  # streamed: a large store's raw payloads need not fit in memory
        row = dict(zip(cols, values, strict=True))
        yield document(entity, row, json.loads(row["raw"]) if "raw" in row else None)


CREATE = [
    "CREATE TABLE search_docs (rowid INTEGER PRIMARY KEY, entity TEXT NOT NULL,"
    " entity_id INTEGER NOT NULL, product_id INTEGER, dated TEXT, title TEXT NOT NULL,"
    " body TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE search_fts USING fts5(title, body, content='search_docs',"
    " content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2')",
]
# PostgreSQL: the same documents, with their words in a generated ``tsvector`` column
# (title weighted A, body B) under a GIN index; the engine keeps the words in step.
CREATE_PG = [
    "CREATE TABLE search_docs (rowid BIGINT PRIMARY KEY, entity TEXT NOT NULL,"
    " entity_id BIGINT NOT NULL, product_id BIGINT, dated TEXT, title TEXT NOT NULL,"
    " body TEXT NOT NULL, words tsvector GENERATED ALWAYS AS"
    " (setweight(to_tsvector('english', title), 'A')"
    " || setweight(to_tsvector('english', body), 'B')) STORED)",
    "CREATE INDEX search_docs_words ON search_docs USING GIN (words)",
]
COLUMNS = "rowid, entity, entity_id, product_id, dated, title, body"


class _Cursor:
    """A DB-API cursor that takes our SQL (``?`` marks) on either engine."""

    def __init__(self, conn: Any) -> None:
        self._cur = conn.cursor()
        self._conn = conn

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        if backend.is_postgres(self._conn):  # psycopg's errors as peewee's, as execute_sql
            with peewee.__exception_wrapper__:
                self._cur.execute(backend.sql(text, self._conn), list(params))
        else:  # sqlite3's own errors: the FTS5 search reads a syntax error from them
            self._cur.execute(backend.sql(text, self._conn), list(params))
        return self._cur

    def executemany(self, text: str, rows: Iterable[Sequence[Any]]) -> Any:
        self._cur.executemany(backend.sql(text, self._conn), rows)
        return self._cur

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur)


def _cursor(conn: Any) -> _Cursor:
    """A cursor from a peewee database or a sqlite3 connection."""
    return _Cursor(conn)


def _drop(conn: Any, rowid_sql: str, params: list[Any]) -> None:
    cur = _cursor(conn)
    rows = backend.in_rows(f"({rowid_sql})", conn)
    if not backend.is_postgres(conn):
        # External content: FTS5 removes a document only given the exact text it indexed.
        cur.execute(
            "INSERT INTO search_fts(search_fts, rowid, title, body)"
            f" SELECT 'delete', rowid, title, body FROM search_docs WHERE rowid {rows}",
            params,
        )
    cur.execute(f"DELETE FROM search_docs WHERE rowid {rows}", params)


def index(conn: Any, docs: Sequence[Doc]) -> None:
    """Write these documents, replacing any stored under the same keys."""
    if not docs:
        return
    cur = _cursor(conn)
    if backend.is_postgres(conn):
        cur.executemany(_UPSERT_PG, docs)
        return
    keys = json.dumps([doc[0] for doc in docs])
    ids = backend.id_list(conn)
    old_docs = cur.execute(
        f"SELECT rowid, title, body FROM search_docs WHERE rowid IN {ids}", [keys]
    ).fetchall()
    if old_docs:  # an update: FTS5 removes a document only given the text it indexed
        cur.executemany(
            "INSERT INTO search_fts(search_fts, rowid, title, body) VALUES ('delete', ?, ?, ?)",
            old_docs,
        )
        cur.execute(f"DELETE FROM search_docs WHERE rowid IN {ids}", [keys])
    cur.executemany(
        "INSERT INTO search_fts(rowid, title, body) VALUES (?, ?, ?)",
        [(doc[0], doc[5], doc[6]) for doc in docs],
    )
    cur.executemany(f"INSERT INTO search_docs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", docs)


# PostgreSQL: a document whose text and filters are unchanged is left alone, so its
# words are not indexed again (no GIN churn, no dead row) when a row changed elsewhere.
_DOC_FIELDS = COLUMNS.split(", ")[1:]  # all but the key
_UPSERT_PG = (
    f"INSERT INTO search_docs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (rowid) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _DOC_FIELDS)
    + " WHERE ("
    + ", ".join(f"search_docs.{c}" for c in _DOC_FIELDS)
    + ") IS DISTINCT FROM ("
    + ", ".join(f"excluded.{c}" for c in _DOC_FIELDS)
    + ")"
)


def _rowids(conn: Any, entity: str) -> str:
    if backend.is_postgres(conn):
        return f"SELECT value::bigint * 4 + {KINDS[entity]} FROM json_array_elements_text(%s::json)"
    return f"SELECT value * 4 + {KINDS[entity]} FROM json_each(?)"


def forget(conn: Any, entity: str, ids: Iterable[int]) -> None:
    """Drop the documents of ``entity`` with these ids (call before or after the rows go)."""
    payload = json.dumps(sorted(set(ids)))
    if payload != "[]":
        _drop(conn, _rowids(conn, entity), [payload])


def forget_where(conn: Any, entity: str, where: str, params: list[Any]) -> None:
    """Drop the documents of ``entity`` rows matching ``where``: call before deleting them."""
    rowid_sql = f'SELECT id * 4 + {KINDS[entity]} FROM "{TABLES[entity]}" WHERE {where}'
    _drop(conn, rowid_sql, params)


def forget_all(conn: Any) -> None:
    cur = _cursor(conn)
    cur.execute("DELETE FROM search_docs")
    if not backend.is_postgres(conn):
        cur.execute("INSERT INTO search_fts(search_fts) VALUES ('delete-all')")


def rebuild(conn: Any) -> None:
    """Index every stored row again (the migration, a restore, ``status --check --repair``)."""
    cur = _cursor(conn)
    cur.execute("DELETE FROM search_docs")
    for entity in ENTITIES:
        docs = stored_documents(conn, entity)
        # In batches: psycopg pipelines ``executemany``, and the reading cursor shares
        # its connection, so the rows to write must be read before the write starts.
        while batch := list(itertools.islice(docs, 2000)):
            cur.executemany(
                f"INSERT INTO search_docs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", batch
            )
    if not backend.is_postgres(conn):
        cur.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")


@dataclass(frozen=True)
class IndexCheck:
    """How the index differs from the rows: counts by kind of difference."""

    documents: int
    missing: int  # rows with no document
    stale: int  # documents with no row
    changed: int  # documents whose text or filters differ from the row's
    fts_ok: bool  # the FTS5 words match the documents

    @property
    def ok(self) -> bool:
        return self.fts_ok and not (self.missing or self.stale or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "documents": self.documents,
            "missing": self.missing,
            "stale": self.stale,
            "changed": self.changed,
            "fts_ok": self.fts_ok,
        }


def check(conn: Any) -> IndexCheck:
    """Compare the index with the documents of the stored rows (read only)."""
    cur = _cursor(conn)
    expected = {doc[0]: doc for entity in ENTITIES for doc in stored_documents(conn, entity)}
    stored = {row[0]: tuple(row) for row in cur.execute(f"SELECT {COLUMNS} FROM search_docs")}
    missing = len(expected.keys() - stored.keys())
    stale = len(stored.keys() - expected.keys())
    changed = sum(stored[k] != expected[k] for k in expected.keys() & stored.keys())
    fts_ok = True  # PostgreSQL derives the words from the row itself
    if not backend.is_postgres(conn):
        try:
            cur.execute("INSERT INTO search_fts(search_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError:
            fts_ok = False
    return IndexCheck(len(stored), missing, stale, changed, fts_ok)


# -- queries -----------------------------------------------------------------------------

_IDS = "(SELECT value FROM json_each(?))"
TITLE_WEIGHT, BODY_WEIGHT = 5.0, 1.0
SNIPPET_WORDS = 12


@dataclass(frozen=True)
class Filters:
    """What a search keeps: the query text (FTS5 MATCH text on SQLite, ``tsquery`` text
    on PostgreSQL), entities, products, ``dated`` bounds."""

    match: str
    entities: tuple[str, ...] = ENTITIES
    product_ids: tuple[int, ...] | None = None
    dated_from: str | None = None  # inclusive, stored time text
    dated_before: str | None = None  # exclusive

    def scope_on_docs(self, id_list: str, clauses: list[str], params: list[Any]) -> None:
        """Add the product and date conditions on ``search_docs d`` (both backends);
        ``id_list`` is the backend's subquery of the ids in one parameter."""
        if self.product_ids is not None:
            clauses.append(f"d.product_id IN {id_list}")
            params.append(json.dumps(list(self.product_ids)))
        if self.dated_from is not None:
            clauses.append("d.dated >= ?")
            params.append(self.dated_from)
        if self.dated_before is not None:
            clauses.append("d.dated < ?")
            params.append(self.dated_before)

    def where(self) -> tuple[str, str, list[Any]]:
        """The FROM clause and WHERE condition of the matches, and their parameters.

        Without product or date filters the documents table is not joined: FTS5
        alone counts and ranks (the entity is the key's remainder).
        """
        clauses = ["search_fts MATCH ?"]
        params: list[Any] = [self.match]
        if set(self.entities) != set(ENTITIES):
            kinds = ", ".join(str(KINDS[e]) for e in sorted(set(self.entities)))
            clauses.append(f"search_fts.rowid % 4 IN ({kinds})")
        self.scope_on_docs(_IDS, clauses, params)
        source = "search_fts"
        if len(params) > 1:  # CROSS JOIN keeps FTS5 the outer loop: the matches drive the lookups
            source += " CROSS JOIN search_docs d ON d.rowid = search_fts.rowid"
        return source, " AND ".join(clauses), params


def search(
    conn: Any, filters: Filters, *, limit: int, offset: int, marks: tuple[str, str]
) -> tuple[int, list[dict[str, Any]]]:
    """All matches counted, and one page ranked with the title weighted above the body.

    ``filters.match`` is FTS5 MATCH text on SQLite and ``tsquery`` text on PostgreSQL.
    The page is ranked on the index alone; snippets and titles are read for the
    page's rows only. Raises ``sqlite3.OperationalError`` for a bad MATCH text.
    """
    if backend.is_postgres(conn):
        return _search_pg(conn, filters, limit=limit, offset=offset, marks=marks)
    source, where, params = filters.where()
    cur = _cursor(conn)
    (total,) = cur.execute(f"SELECT COUNT(*) FROM {source} WHERE {where}", params).fetchone()
    ranked = cur.execute(
        f"SELECT search_fts.rowid, bm25(search_fts, {TITLE_WEIGHT}, {BODY_WEIGHT}) AS score"
        f" FROM {source} WHERE {where} ORDER BY score, search_fts.rowid LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    if not ranked:
        return int(total), []
    details = cur.execute(
        "SELECT d.rowid, d.entity, d.entity_id, d.title,"
        f" snippet(search_fts, -1, ?, ?, '…', {SNIPPET_WORDS}), d.product_id, d.dated"
        " FROM search_fts CROSS JOIN search_docs d ON d.rowid = search_fts.rowid"
        # "+" keeps the page's keys a filter on one pass over the matches: as an index
        # constraint, FTS5 would run the whole query again for every key.
        f" WHERE search_fts MATCH ? AND +search_fts.rowid IN {_IDS}",
        [*marks, filters.match, json.dumps([key for key, _ in ranked])],
    )
    by_key = {row[0]: row[1:] for row in details.fetchall()}
    keys = ("entity", "id", "title", "snippet", "product_id", "dated")
    return int(total), [
        {**dict(zip(keys, by_key[key], strict=True)), "rank": score} for key, score in ranked
    ]


# PostgreSQL: ``ts_rank`` weights are {D, C, B, A}: body (B) to title (A) as BM25's 1:5;
# normalization 1 divides by 1 + log(length), as BM25 damps long documents.
_PG_RANK = f"ts_rank('{{0, 0, {BODY_WEIGHT / TITLE_WEIGHT}, 1}}', d.words, q.q, 1)"
_PG_QUERY = "CROSS JOIN to_tsquery('english', ?) AS q(q)"


def _where_pg(conn: Any, filters: Filters) -> tuple[str, list[Any]]:
    """The condition on ``search_docs d`` and the filters' parameters (after the query's)."""
    clauses = ["d.words @@ q.q"]
    params: list[Any] = []
    if set(filters.entities) != set(ENTITIES):
        clauses.append(f"d.entity IN {backend.text_list(conn)}")
        params.append(json.dumps(sorted(set(filters.entities))))
    filters.scope_on_docs(backend.id_list(conn), clauses, params)
    return " AND ".join(clauses), params


def _search_pg(
    conn: Any, filters: Filters, *, limit: int, offset: int, marks: tuple[str, str]
) -> tuple[int, list[dict[str, Any]]]:
    """``search`` on the ``words`` column: ``@@`` under its GIN index, ``ts_rank``,
    ``ts_headline`` for the page's snippets."""
    where, params = _where_pg(conn, filters)
    cur = _cursor(conn)
    source = f"search_docs d {_PG_QUERY}"
    (total,) = cur.execute(
        f"SELECT COUNT(*) FROM {source} WHERE {where}", [filters.match, *params]
    ).fetchone()
    if not total:
        return 0, []
    ranked = cur.execute(
        f"SELECT d.rowid, -{_PG_RANK} AS score FROM {source} WHERE {where}"
        " ORDER BY score, d.rowid LIMIT ? OFFSET ?",
        [filters.match, *params, limit, offset],
    ).fetchall()
    if not ranked:
        return int(total), []
    marked = f"StartSel={marks[0]}, StopSel={marks[1]}"
    # The snippet comes from the title when the title matches (all of it: titles are short),
    # else from the body (FTS5's ``snippet`` also picks one column).
    details = cur.execute(
        "SELECT d.rowid, d.entity, d.entity_id, d.title, CASE"
        " WHEN to_tsvector('english', d.title) @@ q.q THEN ts_headline('english', d.title, q.q, ?)"
        " ELSE ts_headline('english', d.body, q.q, ?) END, d.product_id, d.dated,"
        " to_tsvector('english', d.title) @@ q.q, d.body"
        f" FROM {source} WHERE d.rowid IN {backend.id_list(conn)}",
        [
            f"{marked}, HighlightAll=true",
            f"{marked}, MaxWords={SNIPPET_WORDS}, MinWords=5",
            filters.match,
            json.dumps([key for key, _ in ranked]),
        ],
    )
    by_key: dict[int, tuple[Any, ...]] = {}
    for rowid, entity, eid, title, snippet, pid, dated, in_title, body in details.fetchall():
        text = title if in_title else body
        by_key[rowid] = (entity, eid, title, _ellipsis(snippet, text, marks), pid, dated)
    keys = ("entity", "id", "title", "snippet", "product_id", "dated")
    return int(total), [
        {**dict(zip(keys, by_key[key], strict=True)), "rank": score} for key, score in ranked
    ]


def _ellipsis(snippet: str, text: str, marks: tuple[str, str]) -> str:
    """``…`` where the snippet cuts the text, as FTS5's ``snippet`` marks it."""
    plain = " ".join(snippet.replace(marks[0], "").replace(marks[1], "").split())
    whole = " ".join(text.split())
    if not plain or plain == whole:
        return snippet
    head = "" if whole.startswith(plain) else "…"
    tail = "" if whole.endswith(plain) else "…"
    return f"{head}{snippet}{tail}"
