"""What differs between the two stores (SQLite and PostgreSQL) on the write path.

Our own SQL is written once, in SQLite's form: ``?`` marks and id lists passed as
one JSON parameter. ``sql`` turns such text into PostgreSQL's form when the bound
database is PostgreSQL; ``id_list`` and ``text_list`` give the subquery that
expands a JSON list on either engine; ``write_transaction`` is SQLite's
``BEGIN IMMEDIATE`` or, on PostgreSQL, a transaction that takes one
transaction-scoped advisory lock first, so writers of one mirror queue up the
same way on both engines and no read-then-write can interleave.

On a server every statement is a round trip, which dominated PostgreSQL's sync:
``in_ids`` gives id lists as arrays (index scans even before the planner has
statistics), ``BEGIN`` takes the write lock in the same round trip, and a
``pipelined`` write transaction waits for the server only where it reads a result.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from peewee import Database, DatabaseProxy, PostgresqlDatabase, __exception_wrapper__, _transaction

from testio_sync.settings import redact_url
from testio_sync.store.models import database

# Advisory lock keys are 64-bit; each mirror (database + schema) derives its own.
_WRITE_LOCK_SALT = b"testio-sync:writes"


def is_postgres(db: Any = None) -> bool:
    """True when ``db`` (by default the bound database) is a PostgreSQL database."""
    target = database if db is None else db
    if isinstance(target, DatabaseProxy):
        target = target.obj
    return isinstance(target, PostgresqlDatabase)


def to_format_marks(text: str) -> str:
    """SQLite ``?`` marks as psycopg ``%s`` marks; any other literal ``%`` is doubled.

    A ``%s`` already there (from ``id_list``/``text_list``) stays a mark, and a ``?``
    inside a single-quoted literal stays a character: our SQL never binds inside one.
    """
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "'":
            quoted = not quoted
            out.append(char)
        elif char == "%" and text.startswith("%s", i) and not quoted:
            out.append("%s")
            i += 1
        elif char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
        i += 1
    return "".join(out)


def sql(text: str, db: Any = None) -> str:
    """Our SQL text in the bound database's parameter style."""
    return to_format_marks(text) if is_postgres(db) else text


def id_list(db: Any = None) -> str:
    """A subquery of the integers in one JSON-array parameter (``?`` or ``%s``)."""
    if is_postgres(db):
        return "(SELECT value::bigint FROM json_array_elements_text(%s::json))"
    return "(SELECT value FROM json_each(?))"


def in_ids(db: Any = None) -> str:
    """``IN`` one JSON-array parameter of integers, as a condition's right-hand side.

    On PostgreSQL it is ``= ANY(ARRAY(...))``: the list becomes one array computed
    once, which an index scan takes whatever the statistics, and two such tests
    joined by ``OR`` become one bitmap scan of two indexes. ``IN (subquery)`` there
    is a semi-join that seq-scans a table the planner has no statistics for, and an
    ``OR`` of two of them always reads the whole table.
    """
    return in_rows(id_list(db), db)


def in_rows(subquery: str, db: Any = None) -> str:
    """``IN`` a parenthesized subquery, as a condition's right-hand side: on PostgreSQL
    ``= ANY(ARRAY(...))``, for the reasons ``in_ids`` gives."""
    return f"= ANY(ARRAY{subquery})" if is_postgres(db) else f"IN {subquery}"


def text_list(db: Any = None) -> str:
    """A subquery of the strings in one JSON-array parameter."""
    if is_postgres(db):
        return "(SELECT value FROM json_array_elements_text(%s::json))"
    return "(SELECT value FROM json_each(?))"


def in_texts(db: Any = None) -> str:
    """``IN`` one JSON-array parameter of strings (``in_rows`` of ``text_list``)."""
    return in_rows(text_list(db), db)


def execute(text: str, params: Sequence[Any] = (), db: Any = None) -> Any:
    """Run one statement of our SQL on ``db`` (default: the bound database); its cursor."""
    target = database if db is None else db
    return target.execute_sql(sql(text, db), list(params))


def execute_many(text: str, rows: Iterable[Sequence[Any]], db: Any = None) -> None:
    """Run one statement of our SQL once per row, as one prepared statement."""
    target = database if db is None else db
    target.cursor().executemany(sql(text, db), list(rows))


def mirror_key(db: Database, salt: bytes) -> int:
    """A signed 64-bit advisory lock key for this mirror (database name and schema)."""
    where = redact_url(str(db.database)).encode()  # the same mirror whatever the password
    digest = hashlib.sha256(salt + b"|" + where).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _LockedTransaction(_transaction):
    """A transaction whose ``BEGIN`` takes the mirror's write lock in the same round trip.

    Without parameters psycopg sends both statements as one simple query: a save's
    transaction opens in one round trip instead of two.
    """

    def __init__(self, db: Database, key: int) -> None:
        super().__init__(db)
        self._key = int(key)

    def _build_ctx(self) -> _LockedTransaction:
        return type(self)(self.db, self._key)

    def _begin(self) -> None:
        with __exception_wrapper__:
            self.db.cursor().execute(f"BEGIN; SELECT pg_advisory_xact_lock({self._key})")


class _PipelinedTransaction(_LockedTransaction):
    """A locked transaction run in pipeline mode from ``BEGIN`` to ``COMMIT``.

    Statements go out as they are made; the client waits only where it reads a
    result. A save that reads once and then writes costs two round trips in all:
    ``BEGIN``, the lock and its read in the first, its writes and ``COMMIT`` in the
    second. A row count read inside is not known yet (-1): bodies must not use one.
    """

    def __enter__(self) -> Any:
        self._pipeline = self.db.connection().pipeline()
        self._pipeline.__enter__()
        try:
            return super().__enter__()
        except BaseException as exc:
            self._pipeline.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _begin(self) -> None:  # two statements: a pipeline sends no multi-statement query
        cursor = self.db.cursor()
        cursor.execute("BEGIN")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [self._key])

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        failure: BaseException | None = exc
        try:
            super().__exit__(exc_type, exc, tb)  # queues COMMIT, or ROLLBACK after an error
        except BaseException as raised:
            failure = raised
        try:
            if failure is None:
                self._pipeline.__exit__(None, None, None)  # the second round trip
            else:
                self._pipeline.__exit__(type(failure), failure, failure.__traceback__)
        except BaseException as raised:  # a queued write (or COMMIT) failed
            failure = raised
        if failure is None:
            return
        import psycopg  # only a PostgreSQL store gets here: the driver is installed

        conn, status = self.db.connection(), psycopg.pq.TransactionStatus
        if conn.info.transaction_status in (status.INTRANS, status.INERROR):
            # The failed statement made the server skip the queued COMMIT. On a broken
            # connection this fails too: the pool drops it and the first error stands.
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        if failure is exc and not isinstance(exc, psycopg.Error):
            return  # the body's own error propagates unchanged
        with __exception_wrapper__:  # psycopg's errors as peewee's, as ``execute_sql`` does
            raise failure


class _PostgresWrite:
    """``database.atomic()`` that first takes this mirror's write lock (released at commit)."""

    def __init__(self, db: Database, *, pipelined: bool = False) -> None:
        self._db = db
        self._pipelined = pipelined
        self._atomic: Any = None

    def __enter__(self) -> Any:
        if self._db.transaction_depth() == 0:
            kind = _PipelinedTransaction if self._pipelined else _LockedTransaction
            self._atomic = kind(self._db, mirror_key(self._db, _WRITE_LOCK_SALT))
        else:  # a savepoint: the outer transaction holds the lock already
            self._atomic = self._db.atomic()
        return self._atomic.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._atomic.__exit__(*exc)


def write_transaction(db: Any = None, *, pipelined: bool = False) -> Any:
    """A write transaction that waits for other writers instead of failing midway.

    ``pipelined`` (PostgreSQL; SQLite has no round trips) sends the statements as
    they come and waits only for results read: for bodies that read no row count.
    """
    target = database.obj if db is None else db
    if is_postgres(target):
        return _PostgresWrite(target, pipelined=pipelined)
    return target.atomic("IMMEDIATE")
