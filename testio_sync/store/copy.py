"""Copying a mirror from one store to another (SQLite file or PostgreSQL), verified by counts.

The source is read inside one read-only transaction (a SQLite read snapshot, a
PostgreSQL ``REPEATABLE READ`` transaction), so the copy is the mirror as of one
moment even while a sync writes to it: every sync commits in steps a crash could
also stop at, and the next sync converges from any of them. Reading a snapshot
needs no sync lock, so a copy never waits for, nor holds up, the workers of a
shared mirror; a run that was queued or running at that moment is written to the
copy as ``abandoned`` (it goes on at the source only).

The target is created at this version's schema and written in one transaction:
rows table by table in batches (``COPY`` on PostgreSQL), then the identity
sequences moved past the copied ids. What the schema derives from the rows
(``bug_devices``, the search index) is derived again on the target, never copied,
so it matches the target's own engine. It is a bulk load: the device trigger is
off while the bugs arrive and one statement derives every device row after them,
search documents are made from the rows in hand, and each secondary index is
built once at the end; all of it inside the transaction, so a failure leaves the
target as it was. Before the commit the target's row counts must equal the
snapshot's, table by table.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from peewee import PeeweeException, PostgresqlDatabase, SqliteDatabase

from testio_sync.dates import to_stored, utc_now
from testio_sync.errors import ConfigError, StoreError
from testio_sync.settings import DATABASE_SCHEMES, Settings, redact_url, touch_private
from testio_sync.store import backend, search_index
from testio_sync.store import migrations as sqlite_schema
from testio_sync.store.db import ENTITY_TABLES, PRAGMAS, backup_database, ensure_schema
from testio_sync.store.migrations_pg import DEVICE_TRIGGER, fill_devices
from testio_sync.store.models import ALL_MODELS

# Every table whose rows are the mirror, parents before children (foreign keys).
COPIED_TABLES = (*ENTITY_TABLES[:-1], "sync_events", "sync_metadata")
# Rows the schema derives from the copied ones: rebuilt on the target, counted for the record.
DERIVED_TABLES = ("bug_devices", "search_docs")
# Tables whose ``id`` is assigned by the store (an identity column on PostgreSQL).
_OWN_IDS = ("users", "sync_events", "broken_tests")
# A target holding only this metadata key (written when a token is first seen) is empty.
_NOT_DATA = ("account_key",)
BATCH_ROWS = 2000

COLUMNS: dict[str, tuple[str, ...]] = {
    model._meta.table_name: tuple(f.column_name for f in model._meta.sorted_fields)
    for model in ALL_MODELS
}

Progress = Callable[[str, int, int], None]
"""``(table, rows done, rows in the table)``, called after each batch."""


def _no_progress(table: str, done: int, total: int) -> None:
    return None


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


# -- where a copy goes -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSpec:
    """A store named by the user: a PostgreSQL URL or a SQLite file path."""

    url: str | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        """How messages name it: never with a password."""
        return redact_url(self.url) if self.url else str(self.path)

    @property
    def is_postgres(self) -> bool:
        return self.url is not None


def parse_store(text: str, *, option: str = "--to") -> StoreSpec:
    """``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` or a path to a ``.db`` file.

    Raises:
        ConfigError: neither of these (one line, the password hidden).
    """
    raw = text.strip()
    if "://" in raw:
        shown = redact_url(raw)
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018  (a port that is not a number raises here)
        except ValueError as exc:  # the text names the part at fault, never the password
            raise ConfigError(f"{option}: not a valid URL ({exc})") from None
        if parts.scheme not in DATABASE_SCHEMES:
            raise ConfigError(
                f"{option}: a store is a postgresql:// URL or a .db file path, got {shown}"
            )
        if not parts.hostname or not parts.path.strip("/"):
            raise ConfigError(
                f"{option}: the URL must name a host and a database "
                f"(postgresql://USER@HOST[:PORT]/DB), got {shown}"
            )
        return StoreSpec(url=raw)
    if not raw:
        raise ConfigError(f"{option}: give a postgresql:// URL or a .db file path")
    path = Path(raw).expanduser()
    if path.suffix != ".db":
        raise ConfigError(
            f"{option}: a SQLite target is a file whose name ends in .db, got {raw!r}"
        )
    if path.is_dir():
        raise ConfigError(f"{option}: {raw} is a folder, not a .db file")
    return StoreSpec(path=path)


def store_of(settings: Settings) -> StoreSpec:
    """The mirror ``settings`` select."""
    if settings.database_url is not None:
        return StoreSpec(url=settings.database_url.reveal())
    return StoreSpec(path=settings.db_path)


def same_store(a: StoreSpec, b: StoreSpec) -> bool:
    if a.path is not None and b.path is not None:
        return a.path.resolve() == b.path.resolve()
    return a.url is not None and b.url is not None and a.label == b.label


class TargetHoldsDataError(ConfigError):
    """The target of a copy holds a mirror already: never overwritten without ``replace``."""


def _database_errors() -> tuple[type[BaseException], ...]:
    """Errors of either engine's driver (psycopg only when it is installed)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error, PeeweeException)
    return (sqlite3.Error, PeeweeException, psycopg.Error)


# -- reading: one snapshot of the source --------------------------------------------------------


class _SqliteSource:
    """A SQLite file read inside one read transaction (a snapshot in WAL mode)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StoreError(f"There is no mirror at {path}.")
        self.conn = sqlite3.connect(path, timeout=15, isolation_level=None)
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # the snapshot starts

    def count(self, table: str) -> int:
        return int(self.conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])

    def batches(self, table: str, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        cur = self.conn.execute(f'SELECT {_quoted(columns)} FROM "{table}" ORDER BY rowid')
        while batch := cur.fetchmany(BATCH_ROWS):
            yield batch

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.rollback()
        self.conn.close()


class _PostgresSource:
    """A PostgreSQL database read in one ``REPEATABLE READ, READ ONLY`` transaction."""

    def __init__(self, url: str) -> None:
        import psycopg

        from testio_sync.store.postgres import CONNECT_TIMEOUT_S, conninfo

        self.conn = psycopg.connect(conninfo(url), connect_timeout=CONNECT_TIMEOUT_S)
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True
        self._cursors = 0

    def count(self, table: str) -> int:
        row = self.conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
        return int(row[0]) if row else 0

    def batches(self, table: str, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        self._cursors += 1
        order = '"key"' if table == "sync_metadata" else '"id"'
        with self.conn.cursor(name=f"copy_{self._cursors}") as cur:  # streamed by the server
            cur.itersize = BATCH_ROWS
            cur.execute(f'SELECT {_quoted(columns)} FROM "{table}" ORDER BY {order}')
            while batch := cur.fetchmany(BATCH_ROWS):
                yield batch

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()
        self.conn.close()


def _open_source(spec: StoreSpec) -> _SqliteSource | _PostgresSource:
    try:
        if spec.url is not None:
            return _PostgresSource(spec.url)
        assert spec.path is not None
        return _SqliteSource(spec.path)
    except (*_database_errors(), OSError) as exc:  # psycopg's text may hold the URL
        raise StoreError(f"Cannot read the mirror {spec.label}: {_scrubbed(exc, spec)}") from exc


def _scrubbed(exc: BaseException, spec: StoreSpec) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if spec.url is None:
        return text
    from testio_sync.store.postgres import scrub

    return scrub(text, spec.url)


# -- writing: one transaction on the target ---------------------------------------------------


class _SqliteTarget:
    """A SQLite file, created at this version's schema, written on one connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        touch_private(path)
        schema = SqliteDatabase(str(path), pragmas=PRAGMAS)
        try:
            ensure_schema(schema)
        finally:
            schema.close()
        self.conn = sqlite3.connect(path, timeout=15, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = OFF")  # parents come first anyway
        self._schema: list[tuple[str, str, str]] = []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def count(self, table: str, where: str = "") -> int:
        return int(self.conn.execute(f'SELECT COUNT(*) FROM "{table}" {where}').fetchone()[0])

    def clear(self, tables: Sequence[str]) -> None:
        search_index.forget_all(self.conn)
        for table in reversed(tables):  # children first; triggers drop the device rows
            self.conn.execute(f'DELETE FROM "{table}"')
        # A bulk load: the bugs' device rows are derived in one statement at the end,
        # and each secondary index is built once, by sorting, from its own definition.
        loaded = json.dumps([*tables, *DERIVED_TABLES])
        self._schema = self.conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND"
            " ((type = 'index' AND tbl_name IN (SELECT value FROM json_each(?)))"
            "  OR (type = 'trigger' AND name = ?))",
            [loaded, sqlite_schema.DEVICE_TRIGGER],
        ).fetchall()
        for kind, name, _ in self._schema:
            self.conn.execute(f'DROP {kind.upper()} "{name}"')

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in columns)
        self.conn.executemany(f'INSERT INTO "{table}" ({_quoted(columns)}) VALUES ({marks})', rows)

    def finish(self, tables: Sequence[str]) -> None:
        if any(kind == "trigger" for kind, _, _ in self._schema):
            self.conn.execute(sqlite_schema.FILL_DEVICES)
        # The documents came with the rows; the words are indexed from them in one pass.
        self.conn.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
        for _, _, definition in self._schema:
            self.conn.execute(definition)
        self._schema = []

    def close(self) -> None:
        self.conn.close()


class _PostgresTarget:
    """A PostgreSQL database, migrated, written under the mirror's write lock."""

    def __init__(self, url: str, option: str) -> None:
        from testio_sync.store.postgres import connect_postgres

        self.db: PostgresqlDatabase = connect_postgres(url, variable=option)
        self.db.connect(reuse_if_open=True)
        self._bulk_devices = False
        self._indexes: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with backend.write_transaction(self.db):
            yield

    def count(self, table: str, where: str = "") -> int:
        return int(self.db.execute_sql(f'SELECT COUNT(*) FROM "{table}" {where}').fetchone()[0])

    def clear(self, tables: Sequence[str]) -> None:
        # TRUNCATE fires no row triggers: the derived tables go in the same statement.
        loaded = [*tables, *DERIVED_TABLES]
        self.db.execute_sql(f"TRUNCATE {_quoted(loaded)}")
        # A bulk load builds each secondary index once at the end, by sorting, instead
        # of growing it row by row; the definitions come from the catalog, as they are.
        self._indexes = self.db.execute_sql(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " WHERE n.nspname = current_schema() AND t.relname = ANY(%s)"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            [loaded],
        ).fetchall()
        for name, _ in self._indexes:
            self.db.execute_sql(f'DROP INDEX "{name}"')

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if table == "bugs" and not self._bulk_devices:
            # The device rows are derived in one pass at the end (``finish``): the row
            # trigger would take four fifths of the copy. DDL is transactional here.
            self.db.execute_sql(f'ALTER TABLE "bugs" DISABLE TRIGGER "{DEVICE_TRIGGER}"')
            self._bulk_devices = True
        with (
            self.db.connection().cursor() as cur,
            cur.copy(f'COPY "{table}" ({_quoted(columns)}) FROM STDIN') as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def finish(self, tables: Sequence[str]) -> None:
        if self._bulk_devices:
            self.db.execute_sql(fill_devices())
            self.db.execute_sql(f'ALTER TABLE "bugs" ENABLE TRIGGER "{DEVICE_TRIGGER}"')
            self._bulk_devices = False
        for table in _OWN_IDS:
            if table in tables:  # the next id assigned here must follow the copied ones
                self.db.execute_sql(
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'),"
                    f' COALESCE((SELECT MAX("id") FROM "{table}"), 0) + 1, false)'
                )
        self.db.execute_sql("SET LOCAL maintenance_work_mem = '256MB'")
        for _, definition in self._indexes:
            self.db.execute_sql(definition)
        self._indexes = []

    def close(self) -> None:
        self.db.close()


def _open_target(spec: StoreSpec, option: str) -> _SqliteTarget | _PostgresTarget:
    if spec.url is not None:
        return _PostgresTarget(spec.url, option)
    assert spec.path is not None
    try:
        return _SqliteTarget(spec.path)
    except sqlite3.Error as exc:
        raise StoreError(f"{option}: cannot use {spec.path}: {exc}") from exc


# -- the copy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int
    derived: bool = False  # rebuilt on the target: its count is information, not a check

    @property
    def ok(self) -> bool:
        return self.derived or self.source == self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "source": self.source,
            "target": self.target,
            "derived": self.derived,
            "ok": self.ok,
        }


@dataclass
class CopyReport:
    """What a copy wrote and how its counts compared; ``rows`` counts the copied tables."""

    source: str
    target: str
    tables: list[TableCount] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    runs_settled: int = 0  # runs queued or running at the snapshot, copied as abandoned

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "tables": [t.to_dict() for t in self.tables],
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
            "runs_settled": self.runs_settled,
            "ok": all(t.ok for t in self.tables),
        }


def _holds_data(target: _SqliteTarget | _PostgresTarget, tables: Sequence[str]) -> bool:
    for table in tables:
        where = ""
        if table == "sync_metadata":
            where = "WHERE " + " AND ".join(f"\"key\" <> '{key}'" for key in _NOT_DATA)
        if target.count(table, where):
            return True
    return False


class _RunSettler:
    """Rewrites ``sync_events`` rows still queued or running as abandoned runs."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.status = columns.index("status")
        self.finished = columns.index("finished_at")
        self.error = columns.index("error")
        self.now = to_stored(utc_now())
        self.settled = 0

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        out = []
        for row in rows:
            if row[self.status] in ("queued", "running"):
                values = list(row)
                values[self.status] = "abandoned"
                values[self.finished] = self.now
                values[self.error] = (
                    "The mirror was copied while this run was going on; "
                    "it went on in the original store only."
                )
                row = tuple(values)
                self.settled += 1
            out.append(row)
        return out


def copy_store(
    source: StoreSpec,
    target: StoreSpec,
    *,
    replace: bool = False,
    tables: Sequence[str] = COPIED_TABLES,
    progress: Progress = _no_progress,
    option: str = "--to",
) -> CopyReport:
    """Copy the mirror at ``source`` into ``target`` (see the module's docstring).

    ``tables`` (in ``COPIED_TABLES`` order) are replaced on the target; the others
    stay as they are (a restore keeps the target's ``sync_events``).

    Raises:
        ConfigError: the target cannot be reached or used (one line, password hidden).
        TargetHoldsDataError: the target holds mirrored data and ``replace`` is not set.
        StoreError: the source cannot be read, or a write failed or a count differs
            after writing (nothing was committed).
    """
    if same_store(source, target):
        raise ConfigError(f"{option}: {target.label} is the mirror being copied")
    started = time.monotonic()
    report = CopyReport(source=source.label, target=target.label)
    reader = _open_source(source)
    try:
        writer = _open_target(target, option)
        try:
            with writer.transaction():
                if not replace and _holds_data(writer, tables):
                    raise TargetHoldsDataError(
                        f"{option}: {target.label} already holds mirrored data: pass --replace to "
                        "overwrite it. Nothing was copied."
                    )
                writer.clear(tables)
                report.tables = _copy_tables(reader, writer, tables, progress, report)
                writer.finish(tables)
                report.tables += [
                    TableCount(t, reader.count(t), writer.count(t), derived=True)
                    for t in DERIVED_TABLES
                ]
                bad = [t for t in report.tables if not t.ok]
                if bad:
                    shown = ", ".join(f"{t.table} {t.source} -> {t.target}" for t in bad)
                    raise StoreError(f"The copy's counts differ ({shown}); nothing was kept.")
        except _database_errors() as exc:
            raise StoreError(
                f"Copy to {target.label} failed, nothing was kept: {_scrubbed(exc, target)}"
            ) from exc
        finally:
            writer.close()
    finally:
        reader.close()
    report.seconds = time.monotonic() - started
    return report


_ENTITY_OF = {table: entity for entity, table in search_index.TABLES.items()}
_DOC_COLUMNS = tuple(search_index.COLUMNS.split(", "))


def _documents(
    entity: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The search documents of these rows, as ``search_index.rebuild`` makes them."""
    wanted = search_index.COLUMNS_READ[entity]
    where = [columns.index(c) for c in wanted]
    docs = []
    for row in rows:
        values = dict(zip(wanted, (row[i] for i in where), strict=True))
        raw = json.loads(values["raw"]) if "raw" in values else None
        docs.append(search_index.document(entity, values, raw))
    return docs


def _copy_tables(
    reader: _SqliteSource | _PostgresSource,
    writer: _SqliteTarget | _PostgresTarget,
    tables: Sequence[str],
    progress: Progress,
    report: CopyReport,
) -> list[TableCount]:
    counts = []
    for table in tables:
        columns = COLUMNS[table]
        total = reader.count(table)
        settle = _RunSettler(columns) if table == "sync_events" else None
        done = 0
        progress(table, 0, total)
        entity = _ENTITY_OF.get(table)
        for batch in reader.batches(table, columns):
            writer.write(table, columns, settle(batch) if settle else batch)
            if entity is not None:  # indexed from the rows in hand: no second read
                writer.write("search_docs", _DOC_COLUMNS, _documents(entity, columns, batch))
            done += len(batch)
            progress(table, done, total)
        if settle is not None:
            report.runs_settled = settle.settled
        report.rows += done
        counts.append(TableCount(table, total, writer.count(table)))
    return counts


# -- backups and restores of a PostgreSQL mirror -------------------------------------------------


def backup_store(settings: Settings, dest: Path) -> Path:
    """Write the mirror ``settings`` select to the new private SQLite file ``dest``.

    A SQLite mirror is copied with SQLite's online backup; a PostgreSQL one is
    copied table by table into a new file, which ``restore`` puts back.

    Raises:
        StoreError: the copy failed (the destination is then removed).
    """
    if settings.database_url is None:
        return backup_database(settings.db_path, dest)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        copy_store(store_of(settings), StoreSpec(path=dest), option="backup")
    except (StoreError, ConfigError) as exc:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{dest}{suffix}").unlink(missing_ok=True)
        raise StoreError(f"Backup of {settings.store_label} to {dest} failed: {exc}") from exc
    return dest


def restore_into_postgres(backup: Path, settings: Settings) -> CopyReport:
    """Replace the mirrored data of the PostgreSQL mirror with a backup file's.

    One transaction; the run history (``sync_events``) is kept, as a SQLite restore
    keeps it. The backup is checked and upgraded on a temporary copy first.

    Raises:
        StoreError: the backup is damaged, newer than this version, or unreadable.
    """
    from testio_sync.store.db import checked_backup

    assert settings.database_url is not None
    with checked_backup(backup, settings.backups_dir) as copy:
        return copy_store(
            StoreSpec(path=copy),
            store_of(settings),
            replace=True,
            tables=ENTITY_TABLES,
            option="restore",
        )
