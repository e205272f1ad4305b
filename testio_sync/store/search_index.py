"""The full-text index over products, features, tests and bugs (SQLite FTS5).

Two tables. ``search_docs`` holds one document per entity: its index key
(``rowid = id * 4 + kind``), entity, id, product, date and the indexed text,
computed by one SQL ``SELECT`` per entity (``SOURCES``) from the stored rows.
``search_fts`` is an *external-content* FTS5 table over ``search_docs``: the
words are indexed once, snippets read the text from ``search_docs``, and the
old text an FTS5 delete needs is always at hand there (a contentless table would
need the old text from elsewhere and could not make snippets).

No triggers: the save functions call ``refresh``/``forget`` in their own
transaction, and the same ``SOURCES`` build the index in the migration, rebuild
it after a restore and check it (``check``), so every path yields the same text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KINDS = {"product": 0, "feature": 1, "test": 2, "bug": 3}
ENTITIES = tuple(KINDS)

_NL = "char(10)"


def _json_text(path: str) -> str:
    """A JSON string (or list of strings) in ``raw`` as text, lines joined."""
    return f"coalesce((SELECT group_concat(value, {_NL}) FROM json_each(raw, '{path}')), '')"


def _plain(key: str) -> str:
    """A test text field: its plain-text twin, else the markdown one."""
    return f"coalesce(json_extract(raw, '$.{key}_text'), json_extract(raw, '$.{key}'))"


def _lines(*parts: str) -> str:
    return f" || {_NL} || ".join(f"coalesce({p}, '')" for p in parts)


# Per entity: its table, product column, date column, title and body expressions.
_SHAPES: dict[str, tuple[str, str, str, str, str]] = {
    "product": ("products", "id", "NULL", "name", _lines("description")),
    "feature": (
        "features",
        "product_id",
        "NULL",
        "title",
        _lines(
            "description",
            "howtofind",
            f"(SELECT group_concat(value, {_NL}) FROM json_each(user_stories))",
        ),
    ),
    "test": (
        "tests",
        "product_id",
        "end_at",
        "coalesce(title, '')",
        _lines(*(_plain(key) for key in ("goal", "instructions", "out_of_scope"))),
    ),
    # A bug's steps are a list of strings, or one string in the real API: json_each
    # yields the items of a list and the value itself for a string.
    "bug": (
        "bugs",
        "product_id",
        "reported_at",
        "coalesce(title, '')",
        _lines(
            _json_text("$.steps"),
            "json_extract(raw, '$.actual_result')",
            "json_extract(raw, '$.expected_result')",
        ),
    ),
}

COLUMNS = "rowid, entity, entity_id, product_id, dated, title, body"


def source_sql(entity: str, where: str = "1") -> str:
    """The documents of one entity's rows matching ``where``, in ``COLUMNS`` order."""
    table, product, dated, title, body = _SHAPES[entity]
    return (
        f"SELECT id * 4 + {KINDS[entity]} AS doc_key, '{entity}', id, {product}, {dated},"
        f" {title}, {body}"
        f' FROM "{table}" WHERE {where}'
    )


ALL_SOURCES = " UNION ALL ".join(source_sql(e) for e in ENTITIES)

CREATE = [
    "CREATE TABLE search_docs (rowid INTEGER PRIMARY KEY, entity TEXT NOT NULL,"
    " entity_id INTEGER NOT NULL, product_id INTEGER, dated TEXT, title TEXT NOT NULL,"
    " body TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE search_fts USING fts5(title, body, content='search_docs',"
    " content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2', prefix='2 3')",
]
REBUILD = [
    "DELETE FROM search_docs",
    f"INSERT INTO search_docs ({COLUMNS}) {ALL_SOURCES}",
    "INSERT INTO search_fts(search_fts) VALUES ('rebuild')",
]
_IDS = "(SELECT value FROM json_each(?))"


def _cursor(conn: Any) -> Any:
    """A DB-API cursor from a peewee database or a sqlite3 connection."""
    return conn.cursor()


def _drop(cur: Any, rowid_sql: str, params: list[Any]) -> None:
    # External content: FTS5 removes a document only given the exact text it indexed.
    cur.execute(
        "INSERT INTO search_fts(search_fts, rowid, title, body)"
        f" SELECT 'delete', rowid, title, body FROM search_docs WHERE rowid IN ({rowid_sql})",
        params,
    )
    cur.execute(f"DELETE FROM search_docs WHERE rowid IN ({rowid_sql})", params)


def _rowids(entity: str) -> str:
    return f"SELECT value * 4 + {KINDS[entity]} FROM json_each(?)"


def refresh(conn: Any, entity: str, ids: Iterable[int]) -> None:
    """(Re)index the stored rows of ``entity`` with these ids; ids not stored are dropped."""
    payload = json.dumps(sorted(set(ids)))
    if payload == "[]":
        return
    cur = _cursor(conn)
    _drop(cur, _rowids(entity), [payload])
    cur.execute(
        f"INSERT INTO search_docs ({COLUMNS}) {source_sql(entity, f'id IN {_IDS}')}", [payload]
    )
    cur.execute(
        "INSERT INTO search_fts(rowid, title, body) SELECT rowid, title, body FROM search_docs"
        f" WHERE rowid IN ({_rowids(entity)})",
        [payload],
    )


def forget(conn: Any, entity: str, ids: Iterable[int]) -> None:
    """Drop the documents of ``entity`` with these ids (call before or after the rows go)."""
    payload = json.dumps(sorted(set(ids)))
    if payload != "[]":
        _drop(_cursor(conn), _rowids(entity), [payload])


def forget_where(conn: Any, entity: str, where: str, params: list[Any]) -> None:
    """Drop the documents of ``entity`` rows matching ``where``: call before deleting them."""
    table = _SHAPES[entity][0]
    rowid_sql = f'SELECT id * 4 + {KINDS[entity]} FROM "{table}" WHERE {where}'
    _drop(_cursor(conn), rowid_sql, params)


def forget_all(conn: Any) -> None:
    cur = _cursor(conn)
    cur.execute("DELETE FROM search_docs")
    cur.execute("INSERT INTO search_fts(search_fts) VALUES ('delete-all')")


def rebuild(conn: Any) -> None:
    """Index every stored row again (after a restore, or to repair a failed check)."""
    cur = _cursor(conn)
    for statement in REBUILD:
        cur.execute(statement)


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
    """Compare the index with the rows it must hold (read only)."""
    cur = _cursor(conn)
    docs = f"SELECT {COLUMNS} FROM search_docs"
    (documents,) = cur.execute("SELECT COUNT(*) FROM search_docs").fetchone()
    (missing,) = cur.execute(
        f"SELECT COUNT(*) FROM ({ALL_SOURCES}) s"
        " WHERE NOT EXISTS (SELECT 1 FROM search_docs d WHERE d.rowid = s.doc_key)"
    ).fetchone()
    (stale,) = cur.execute(
        f"SELECT COUNT(*) FROM search_docs WHERE rowid NOT IN (SELECT doc_key FROM ({ALL_SOURCES}))"
    ).fetchone()
    (differing,) = cur.execute(
        f"SELECT COUNT(*) FROM ({docs} EXCEPT SELECT * FROM ({ALL_SOURCES}))"
    ).fetchone()
    try:
        cur.execute("INSERT INTO search_fts(search_fts, rank) VALUES ('integrity-check', 1)")
        fts_ok = True
    except sqlite3.DatabaseError:
        fts_ok = False
    return IndexCheck(documents, missing, stale, differing - stale, fts_ok)


# -- queries -----------------------------------------------------------------------------

TITLE_WEIGHT, BODY_WEIGHT = 5.0, 1.0
SNIPPET_WORDS = 12


@dataclass(frozen=True)
class Filters:
    """What a search keeps: FTS5 ``match`` text, entities, products, ``dated`` bounds."""

    match: str
    entities: tuple[str, ...] = ENTITIES
    product_ids: tuple[int, ...] | None = None
    dated_from: str | None = None  # inclusive, stored time text
    dated_before: str | None = None  # exclusive

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["search_fts MATCH ?"]
        params: list[Any] = [self.match]
        if set(self.entities) != set(ENTITIES):
            kinds = ", ".join(str(KINDS[e]) for e in sorted(set(self.entities)))
            clauses.append(f"search_fts.rowid % 4 IN ({kinds})")
        if self.product_ids is not None:
            clauses.append(f"d.product_id IN {_IDS}")
            params.append(json.dumps(list(self.product_ids)))
        if self.dated_from is not None:
            clauses.append("d.dated >= ?")
            params.append(self.dated_from)
        if self.dated_before is not None:
            clauses.append("d.dated < ?")
            params.append(self.dated_before)
        return " AND ".join(clauses), params


def search(
    conn: Any, filters: Filters, *, limit: int, offset: int, marks: tuple[str, str]
) -> tuple[int, list[dict[str, Any]]]:
    """All matches counted, and one page ranked by BM25 (title weighted above body).

    ``ORDER BY rank`` lets FTS5 hand rows over already sorted, so snippets are made
    for the page only. Raises ``sqlite3.OperationalError`` for a bad MATCH text.
    """
    where, params = filters.where()
    cur = _cursor(conn)
    join = "FROM search_fts JOIN search_docs d ON d.rowid = search_fts.rowid"
    (total,) = cur.execute(f"SELECT COUNT(*) {join} WHERE {where}", params).fetchone()
    rows = cur.execute(
        "SELECT d.entity, d.entity_id, d.title,"
        f" snippet(search_fts, -1, ?, ?, '…', {SNIPPET_WORDS}), rank, d.product_id, d.dated"
        f" {join} WHERE {where} AND rank MATCH 'bm25({TITLE_WEIGHT}, {BODY_WEIGHT})'"
        " ORDER BY rank LIMIT ? OFFSET ?",
        [*marks, *params, limit, offset],
    ).fetchall()
    keys = ("entity", "id", "title", "snippet", "rank", "product_id", "dated")
    return int(total), [dict(zip(keys, row, strict=True)) for row in rows]
