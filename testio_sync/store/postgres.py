"""The mirror in a PostgreSQL database (``TESTIO_SYNC_DATABASE_URL``), through psycopg 3.

Opening binds the same models as the SQLite file and brings the schema to the
same version with ``migrations_pg``; several processes on several hosts may open
it at once: each migration step runs in one transaction under an advisory lock,
so exactly one of them applies it. Connections are per thread, as with SQLite.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from peewee import PeeweeException, PostgresqlDatabase
from playhouse.pool import PooledPostgresqlDatabase

from testio_sync.errors import ConfigError, StoreError
from testio_sync.settings import redact_url
from testio_sync.store import backend
from testio_sync.store.migrations import SCHEMA_VERSION
from testio_sync.store.migrations_pg import MIGRATIONS, VERSION_TABLE
from testio_sync.store.models import database

VARIABLE = "TESTIO_SYNC_DATABASE_URL"
CONNECT_TIMEOUT_S = 5
POOL_SIZE = 32  # per process: sync threads, MCP tool threads and the lock's connection
POOL_STALE_S = 300
_MIGRATION_SALT = b"testio-sync:migrations"

_opened: dict[str, PostgresqlDatabase] = {}
_opening = threading.Lock()


def conninfo(url: str) -> str:
    """The URL psycopg takes (``postgres://`` is an accepted alias)."""
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://") :]
    return url


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's password, and the URL itself, never shown in clear."""
    password = urlsplit(url).password
    text = text.replace(url, redact_url(url))
    return text.replace(password, "***") if password else text


def open_postgres(url: str, *, migrate: bool = True) -> PostgresqlDatabase:
    """Bind the models to the PostgreSQL database at ``url``, creating and upgrading it.

    Raises:
        ConfigError: the server cannot be reached or refuses us (password hidden).
        StoreError: the database was written by a newer version of testio-sync.
    """
    with _opening:
        db = _opened.get(url)
        if db is None:
            db = connect_postgres(url, migrate=migrate, pooled=True)
            _opened[url] = db
        if database.obj is not db:
            database.initialize(db)
        return db


def connect_postgres(
    url: str, *, migrate: bool = True, variable: str = VARIABLE, pooled: bool = False
) -> PostgresqlDatabase:
    """A database handle for ``url``, checked and (``migrate``) upgraded, but not bound.

    ``variable`` names where the URL came from in the one-line error.

    Raises:
        ConfigError: the server cannot be reached or refuses us (password hidden).
        StoreError: the database was written by a newer version of testio-sync.
    """
    # Pooled for the bound mirror: every store call opens and closes its connection,
    # which on a server costs a round trip and authentication; the pool keeps them open.
    # A short-lived handle (a copy's source or target) stays unpooled: closing it closes.
    db = (
        PooledPostgresqlDatabase(
            conninfo(url),
            max_connections=POOL_SIZE,
            stale_timeout=POOL_STALE_S,
            timeout=CONNECT_TIMEOUT_S * 6,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
        if pooled
        else PostgresqlDatabase(conninfo(url), connect_timeout=CONNECT_TIMEOUT_S)
    )
    try:
        if migrate:
            ensure_schema(db)
        else:
            with db.connection_context():
                pass
    except PeeweeException as exc:
        raise ConfigError(
            f"{variable}: cannot use the database at {redact_url(url)}: "
            + scrub(_first_line(exc), url)
        ) from None
    return db


def holds_mirror(db: PostgresqlDatabase) -> bool:
    """True when the database already has a mirror's schema (it was opened before)."""
    row = db.execute_sql("SELECT to_regclass('testio_schema') IS NOT NULL").fetchone()
    return bool(row[0])


def relation_bytes(db: PostgresqlDatabase) -> int:
    """Bytes on disk of the mirror's tables, their indexes and TOAST data included."""
    row = db.execute_sql(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
    ).fetchone()
    return int(row[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def close_postgres(url: str) -> None:
    """Forget an opened database (tests use it)."""
    with _opening:
        db = _opened.pop(url, None)
    if db is not None:
        if not db.is_closed():
            db.close()
        db.close_all()


def schema_version(db: PostgresqlDatabase) -> int:
    db.execute_sql(VERSION_TABLE)
    row = db.execute_sql('SELECT "version" FROM "testio_schema"').fetchone()
    return int(row[0]) if row else 0


def ensure_schema(db: PostgresqlDatabase) -> int:
    """Apply the missing migration steps, each version in its own transaction.

    Raises:
        StoreError: the database is newer than this version of testio-sync knows.
    """
    key = backend.mirror_key(db, _MIGRATION_SALT)
    with db.connection_context():
        for version in range(1, SCHEMA_VERSION + 1):
            with db.atomic():
                db.execute_sql("SELECT pg_advisory_xact_lock(%s)", [key])
                current = schema_version(db)
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"The database has schema version {current}, newer than this "
                        f"testio-sync supports ({SCHEMA_VERSION}); upgrade testio-sync."
                    )
                if current >= version:
                    continue
                for step in MIGRATIONS[version - 1]:
                    if callable(step):
                        step(db)
                    else:
                        db.execute_sql(step)
                db.execute_sql(
                    'INSERT INTO "testio_schema" ("version") VALUES (%s) ON CONFLICT'
                    ' ("singleton") DO UPDATE SET "version" = excluded."version"',
                    [version],
                )
        return schema_version(db)
