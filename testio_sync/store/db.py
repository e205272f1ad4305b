"""The database handle: open, pragmas, schema version, backup and restore.

One process works on one database file; ``open_database`` binds the models to it
and upgrades its schema in place. Each unit of work checks a thread-local
connection out of a pool and back in (``with db.connection_context():``); no
connection is ever shared across concurrent tasks.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peewee import Database, DatabaseError, OperationalError, SqliteDatabase
from playhouse.pool import PooledSqliteDatabase

from testio_sync.errors import StoreError
from testio_sync.settings import Settings, touch_private
from testio_sync.store import search_index
from testio_sync.store.migrations import MIGRATIONS, SCHEMA_VERSION
from testio_sync.store.models import database

PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 15000,
    "foreign_keys": 1,
    "synchronous": "normal",
    "wal_autocheckpoint": 8000,
}

# What gets a damaged mirror back; said by every error that finds the file damaged.
RECOVERY = (
    "put a backup back with `testio-sync restore` (it keeps the damaged file aside), "
    "or sync everything again with `testio-sync sync --nuke`"
)
_DAMAGE = ("malformed", "not a database", "database corrupt")
DATABASE_ERRORS = (DatabaseError, sqlite3.DatabaseError)  # peewee's and sqlite3's

# Idle pooled connections older than this are closed: a bound on open file handles.
POOL_STALE_S = 300

_opened: dict[str, SqliteDatabase] = {}
_opening = threading.Lock()  # a worker thread and the caller may open at the same moment


def open_database(path: Path, *, migrate: bool = True) -> SqliteDatabase:
    """Bind the models to the SQLite file at ``path``, creating and upgrading it.

    Raises:
        StoreError: the file is not a database, or was written by a newer version.
    """
    with _opening:
        return _open(Path(path), migrate=migrate)


def open_store(settings: Settings, *, migrate: bool = True) -> Database:
    """Bind the models to the mirror ``settings`` name: PostgreSQL if a database URL is
    set, else the SQLite file in the data directory.

    Raises:
        ConfigError: the PostgreSQL server cannot be used.
        StoreError: the database is damaged or newer than this version.
    """
    if settings.database_url is not None:
        from testio_sync.store.postgres import open_postgres  # psycopg only when asked for

        return open_postgres(settings.database_url.reveal(), migrate=migrate)
    return open_database(settings.db_path, migrate=migrate)


def store_exists(settings: Settings) -> bool:
    """True when the mirror ``settings`` select was created (a sync or a copy made it).

    Raises:
        ConfigError: the PostgreSQL server cannot be used (password hidden).
    """
    if settings.database_url is None:
        return settings.db_path.is_file()
    from testio_sync.store.postgres import connect_postgres, holds_mirror

    db = connect_postgres(settings.database_url.reveal(), migrate=False)
    try:
        with db.connection_context():
            return holds_mirror(db)
    finally:
        db.close()


class PooledFile(PooledSqliteDatabase):
    """Connections kept open between units of work: opening one and setting its pragmas
    is most of a short read's cost. A connection to a file since renamed aside (a
    damaged mirror) is dropped, so the next unit of work opens the new file.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._files: dict[int, int | None] = {}  # connection id -> inode it was opened on

    def _inode(self) -> int | None:
        try:
            return os.stat(self.database).st_ino
        except OSError:
            return None

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        self._files.setdefault(id(conn), self._inode())
        return conn

    def _is_closed(self, conn: sqlite3.Connection) -> bool:
        if super()._is_closed(conn):
            self._files.pop(id(conn), None)
            return True
        if self._files.get(id(conn)) != self._inode():
            self._close_raw(conn)
            return True
        return False

    def _close_raw(self, conn: sqlite3.Connection) -> None:
        self._files.pop(id(conn), None)
        super()._close_raw(conn)


def _open(path: Path, *, migrate: bool) -> SqliteDatabase:
    key = str(path.resolve())
    db = _opened.get(key)
    if db is None:
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        touch_private(Path(path))
        db = PooledFile(
            key,
            pragmas=PRAGMAS,
            check_same_thread=False,
            max_connections=None,
            stale_timeout=POOL_STALE_S,
        )
        if migrate:
            ensure_schema(db)
        _opened[key] = db
    if database.obj is not db:
        database.initialize(db)
    _private_sidecars(Path(key))
    return db


def _private_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        # Another process closing its last connection may delete them meanwhile.
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).chmod(0o600)


def schema_version(db: SqliteDatabase) -> int:
    return int(db.execute_sql("PRAGMA user_version").fetchone()[0])


def ensure_schema(db: SqliteDatabase) -> int:
    """Apply the missing migration steps, each in its own transaction.

    Raises:
        StoreError: the database is newer than this version of testio-sync knows.
    """
    try:
        with db.connection_context():
            current = schema_version(db)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"The database {db.database} has schema version {current}, newer than "
                    f"this testio-sync supports ({SCHEMA_VERSION}); upgrade testio-sync."
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                with db.atomic("IMMEDIATE"):
                    # Another process may have migrated while we waited for the lock.
                    if schema_version(db) >= version:
                        continue
                    for step in MIGRATIONS[version - 1]:
                        if callable(step):
                            step(db)
                        else:
                            db.execute_sql(step)
                    db.execute_sql(f"PRAGMA user_version = {version}")
            return schema_version(db)
    except (DatabaseError, OperationalError) as exc:
        raise StoreError(explain(f"Cannot open the database {db.database}: {exc}")) from exc


def explain(exc: BaseException) -> str:
    """``str(exc)``, plus how to get back when it says the database file is damaged."""
    text = str(exc).rstrip(".")
    if any(mark in text.lower() for mark in _DAMAGE) and "testio-sync restore" not in text:
        return f"{text}. The database is damaged: {RECOVERY}."
    return str(exc)


def close_database(path: Path) -> None:
    """Forget an opened database and close its connections (tests and restore use it)."""
    with _opening:
        db = _opened.pop(str(Path(path).resolve()), None)
    if db is not None:
        _close_pool(db)


def close_idle_connections() -> None:
    """Close the pooled connections no thread is using, on every opened file."""
    with _opening:
        opened = list(_opened.values())
    for db in opened:
        if isinstance(db, PooledFile):
            db.close_idle()


def _close_pool(db: SqliteDatabase) -> None:
    if not db.is_closed():
        db.close()
    if isinstance(db, PooledFile):
        db.close_idle()  # those in use stay with their threads, and are dropped on return


def backup_database(source: Path, dest: Path) -> Path:
    """Copy a live database with SQLite's online backup into a private file.

    Raises:
        StoreError: the copy failed (the destination is then removed).
    """
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    touch_private(dest)
    src = sqlite3.connect(source)
    out = sqlite3.connect(dest)
    try:
        src.backup(out)
    except sqlite3.Error as exc:
        out.close()
        dest.unlink(missing_ok=True)
        raise StoreError(f"Backup of {source} to {dest} failed: {exc}") from exc
    finally:
        src.close()
        out.close()
    return dest


ENTITY_TABLES = (
    "products",
    "features",
    "tests",
    "test_features",
    "bugs",
    "users",
    "broken_tests",
    "sync_metadata",
)


@contextmanager
def checked_backup(backup: Path, workdir: Path) -> Iterator[Path]:
    """A copy of ``backup`` in a temporary folder of ``workdir``, checked whole and
    upgraded to this version's schema; the backup itself is never written.

    Raises:
        StoreError: the backup is damaged, newer than this version, or unreadable.
    """
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        copy = Path(tmp) / "restore.db"
        try:
            backup_database(backup, copy)
        except StoreError as exc:  # its text names the temporary copy: say only why
            raise StoreError(f"Cannot restore {backup}: {exc.__cause__}") from exc
        check = sqlite3.connect(copy)
        try:
            verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(
                f"Cannot restore {backup}: not a testio-sync database ({exc})"
            ) from exc
        finally:
            check.close()
        if verdict != "ok":
            raise StoreError(f"Cannot restore {backup}: the backup is damaged ({verdict})")
        try:
            ensure_schema(SqliteDatabase(str(copy)))
        except StoreError as exc:
            reason = str(exc).replace(str(copy), "the backup")
            raise StoreError(f"Cannot restore {backup}: {reason}") from exc
        yield copy


def restore_entities(backup: Path, target: Path) -> None:
    """Replace the mirrored data of ``target`` with the backup's, in one transaction.

    The run log (``sync_events``) is kept: it is history, and a backup taken
    during a run would otherwise bring that run back as "running". A backup
    from an older schema is upgraded on a temporary copy first.

    Raises:
        StoreError: the backup is damaged, newer than this version, or unreadable.
    """
    with checked_backup(backup, target.parent) as copy:
        conn = sqlite3.connect(target, timeout=15, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("ATTACH DATABASE ? AS backup", (str(copy),))
            conn.execute("BEGIN IMMEDIATE")
            for table in ENTITY_TABLES:
                conn.execute(f'DELETE FROM main."{table}"')
                conn.execute(f'INSERT INTO main."{table}" SELECT * FROM backup."{table}"')
            # The index is rebuilt from the restored rows, not copied: it then matches them.
            search_index.rebuild(conn)
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE backup")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"Cannot restore {backup}: {exc}") from exc
        finally:
            conn.close()
