"""The SQL pieces of analytics that differ between database backends, behind one seam.

The compiler (``analytics.py``) builds its query from peewee expressions and asks
a ``Dialect`` for everything a second backend would write differently: time
buckets of a stored UTC timestamp, reading a field out of a JSON column, a
section's name (it lives in the product's JSON), and a floating-point cast.
Stored times are ISO text (``2026-11-27T10:00:00.000000Z``), so the SQLite
buckets are string slices plus date arithmetic for ISO weeks; PostgreSQL reads the
same text as a date and formats it with ``to_char`` (``IYYY-"W"IW`` is the ISO week),
and reads the TEXT ``raw`` columns as ``jsonb``. ``dialect_for`` picks the bound
database's dialect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from peewee import SQL, Case, NodeList, fn

from testio_sync.store import backend
from testio_sync.store.models import database

TIME_GRAINS = ("day", "week", "month", "quarter", "year")
_PREFIX_LENGTHS = {"day": 10, "month": 7, "year": 4}  # of ``2026-11-27T...``


class Dialect(Protocol):
    """What the compiler needs from a backend beyond portable SQL."""

    def time_bucket(self, grain: str, column: Any) -> Any:
        """The bucket label of a UTC timestamp: ``2026-11-27``, ``2026-W48``, ``2026-11``,
        ``2026-Q4`` or ``2026``; NULL for a NULL time."""
        ...

    def json_text(self, column: Any, path: str) -> Any:
        """A scalar field of a JSON column, by a ``$.a.b`` path."""
        ...

    def section_name(self, section_id: Any) -> Any:
        """The name of a section, looked up in the products' stored JSON."""
        ...

    def real(self, value: Any) -> Any:
        """``value`` as a float, so that a division is not an integer division."""
        ...


class _StoredText:
    """What both backends share: stored times are ISO text, so day, month and year are
    its prefixes; a section's name is the first match of the backend's lookup text."""

    _SECTION_NAME: str  # a scalar subquery, up to the ``=`` its section id follows

    def time_bucket(self, grain: str, column: Any) -> Any:
        prefix = _PREFIX_LENGTHS.get(grain)
        if prefix is not None:
            return fn.substr(column, 1, prefix)
        return self._computed_bucket(grain, column)

    def _computed_bucket(self, grain: str, column: Any) -> Any:
        raise NotImplementedError

    def section_name(self, section_id: Any) -> Any:
        return NodeList((SQL(self._SECTION_NAME), section_id, SQL("LIMIT 1)")))


class SqliteDialect(_StoredText):
    """SQLite 3.35+: JSON1 functions, ``strftime`` and ``date`` modifiers."""

    _SECTION_NAME = (
        "(SELECT json_extract(s.value, '$.name') FROM products sp,"
        " json_each(sp.raw, '$.sections_with_default') s"
        " WHERE json_extract(s.value, '$.id') ="
    )

    def _computed_bucket(self, grain: str, column: Any) -> Any:
        if grain == "quarter":
            quarter = (fn.substr(column, 6, 2).cast("INTEGER") + 2) / 3
            return fn.printf("%s-Q%d", fn.substr(column, 1, 4), quarter)
        if grain == "week":
            # ISO 8601: the week belongs to the year of its Thursday.
            day = fn.substr(column, 1, 10)
            sunday_first = fn.strftime("%w", day).cast("INTEGER")
            weekday = Case(None, [(sunday_first == 0, 6)], sunday_first - 1)  # Monday = 0
            thursday = fn.date(day, fn.printf("%+d days", 3 - weekday))
            week = (fn.strftime("%j", thursday).cast("INTEGER") - 1) / 7 + 1
            return fn.printf("%s-W%02d", fn.strftime("%Y", thursday), week)
        raise ValueError(f"unknown time grain {grain!r}")

    def json_text(self, column: Any, path: str) -> Any:
        return fn.json_extract(column, path)

    def real(self, value: Any) -> Any:
        return value.cast("REAL")


SQLITE = SqliteDialect()


def _json_path(path: str) -> str:
    """A ``$.a.b`` path as a PostgreSQL text-array literal: ``'{a,b}'``."""
    if not path.startswith("$."):
        raise ValueError(f"unsupported JSON path {path!r}")
    return "'{" + ",".join(path[2:].split(".")) + "}'"


class PostgresDialect(_StoredText):
    """PostgreSQL 12+: ``to_char`` on the stored time text read as a date, ``jsonb``."""

    _SECTION_NAME = (
        "(SELECT s.value ->> 'name' FROM products sp,"
        " jsonb_array_elements(CASE WHEN jsonb_typeof(sp.raw::jsonb"
        " -> 'sections_with_default') = 'array' THEN sp.raw::jsonb"
        " -> 'sections_with_default' ELSE '[]' END) s"
        " WHERE (s.value ->> 'id')::bigint ="
    )

    def _computed_bucket(self, grain: str, column: Any) -> Any:
        day = fn.substr(column, 1, 10).cast("date")
        if grain == "quarter":
            return fn.to_char(day, SQL("'YYYY-\"Q\"Q'"))
        if grain == "week":
            return fn.to_char(day, SQL("'IYYY-\"W\"IW'"))  # ISO 8601 year and week
        raise ValueError(f"unknown time grain {grain!r}")

    def json_text(self, column: Any, path: str) -> Any:
        return NodeList((column.cast("jsonb"), SQL("#>>"), SQL(_json_path(path))))

    def real(self, value: Any) -> Any:
        return value.cast("double precision")


POSTGRES = PostgresDialect()


def dialect_for(db: Any = None) -> Dialect:
    """The dialect of ``db`` (by default the bound database)."""
    return POSTGRES if backend.is_postgres(db) else SQLITE


WORK_MEM = "32MB"  # per sort or hash of one analytics query


@contextmanager
def analytics_reads(db: Any = None) -> Iterator[None]:
    """On PostgreSQL, run the reads inside in one transaction set for grouped joins.

    JIT compilation off: its cost estimates for grouped joins run high, so PostgreSQL 15
    compiled the analytics queries: 0.8 s of a 1.5 s query on the ``large`` store
    (``bench_queries.py``), for queries that take milliseconds to interpret. A larger
    ``work_mem`` keeps their sorts and hashes in memory: the default 4 MB spilled them
    (``tester x week`` 152 ms against 82 ms). SQLite: nothing to do.
    """
    if not backend.is_postgres(db):
        yield
        return
    target = database if db is None else db
    with target.atomic():
        target.execute_sql(
            f"SELECT set_config('jit', 'off', true), set_config('work_mem', '{WORK_MEM}', true)"
        )
        yield
