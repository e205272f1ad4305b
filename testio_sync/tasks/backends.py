"""Which huey storage holds the queue: SQLite in the data directory, or a shared server.

``TESTIO_SYNC_QUEUE_URL`` unset keeps the private ``queue.db``; ``redis://`` is the
storage of huey's ``RedisHuey``, ``postgresql://`` that of its ``PostgresHuey``, so
several workers can take jobs from one queue. Every storage makes its file or tables
on first use, never at import; ``check_reachable`` turns a server that cannot be
reached into one line naming the variable, with the URL's password hidden.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from huey.storage import BaseStorage, PostgresStorage, RedisStorage, SqliteStorage

from testio_sync.errors import ConfigError
from testio_sync.settings import QUEUE_SCHEMES, Settings, redact_url, touch_private

CONNECT_TIMEOUT_S = 5
VARIABLE = "TESTIO_SYNC_QUEUE_URL"
QUEUE_NAME = "testio-sync"


class LazySqliteStorage(SqliteStorage):
    """huey's SQLite storage, whose private file and tables appear on the first connection."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["create_tables"] = False
        super().__init__(*args, **kwargs)
        self._schema_ready = False

    def _create_connection(self) -> sqlite3.Connection:
        path = Path(self.filename)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        touch_private(path)
        conn = super()._create_connection()
        if not self._schema_ready:  # huey's own DDL: ``create ... if not exists``
            conn.execute(self.begin_sql)
            for statement in self.ddl:
                conn.execute(statement)
            conn.execute("commit")
            self._schema_ready = True
        return conn


class LazyPostgresStorage(PostgresStorage):
    """huey's PostgreSQL storage, whose tables appear on the first connection, not at import."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["create_tables"] = False
        super().__init__(*args, **kwargs)
        self._schema_ready = False
        self._listeners: list[Any] = []

    def _listen_conn(self) -> Any:
        """huey leaves each thread's LISTEN connection to the garbage collector; we close them."""
        conn = super()._listen_conn()
        if conn not in self._listeners:
            self._listeners.append(conn)
        return conn

    def close(self) -> bool:
        while self._listeners:
            self._close_quiet(self._listeners.pop())
        return bool(super().close())

    def _connect(self) -> Any:
        conn = super()._connect()  # autocommit: each ``create ... if not exists`` stands alone
        if not self._schema_ready:
            for statement in self.ddl:
                conn.execute(statement)
            self._schema_ready = True
        return conn

    _create_connection = _connect


def sqlite_kwargs(path: Path) -> dict[str, Any]:
    return {
        "storage_class": LazySqliteStorage,
        "filename": str(path),
        "journal_mode": "wal",
        "timeout": 15,
    }


def kind_of(settings: Settings) -> str:
    """``sqlite``, ``redis`` or ``postgres``: the engine the settings' queue lives in."""
    if settings.queue_url is None:
        return "sqlite"
    return QUEUE_SCHEMES[urlsplit(settings.queue_url.reveal()).scheme]


def storage_kwargs(settings: Settings) -> dict[str, Any]:
    """``storage_class`` and its arguments for ``settings`` (nothing is connected yet)."""
    if settings.queue_url is None:
        return sqlite_kwargs(settings.queue_path)
    url = settings.queue_url.reveal()
    if kind_of(settings) == "redis":
        from redis import ConnectionPool

        pool = ConnectionPool.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        return {"storage_class": RedisStorage, "connection_pool": pool}
    return {
        "storage_class": LazyPostgresStorage,
        "dsn": url,
        "connect_timeout": CONNECT_TIMEOUT_S,
    }


def queue_name(settings: Settings) -> str:
    """The queue's name: on a shared server, one queue per mirror.

    A job names a run of one store; a worker of another mirror would find no such
    run and drop the job. So workers of different data directories (or machines)
    that share a server each read a queue of their own; workers of one PostgreSQL
    store share its queue from any host (named by the URL without its password).
    """
    if settings.queue_url is None:
        return QUEUE_NAME
    if settings.database_url is not None:  # the mirror is the database, whichever host asks
        mirror = f"postgresql:{redact_url(settings.database_url.reveal())}"
    else:
        mirror = f"{socket.gethostname()}:{settings.db_path.expanduser().resolve()}"
    return f"{QUEUE_NAME}-{hashlib.sha256(mirror.encode()).hexdigest()[:12]}"


def describe(settings: Settings) -> str:
    """Where the queue is, for ``status``: the file, or the server's URL without its password."""
    if settings.queue_url is None:
        return str(settings.queue_path)
    return redact_url(settings.queue_url.reveal())


def shared(storage: BaseStorage) -> bool:
    """True when the queue lives on a server that several workers may share."""
    return not isinstance(storage, SqliteStorage)


def server_time(storage: BaseStorage) -> float:
    """Epoch seconds by the queue server's clock (Redis ``TIME``, PostgreSQL ``now``).

    Stamps that processes on several hosts compare are taken here, so hosts whose
    clocks differ still agree on an age. A private SQLite queue has only this host's.
    """
    if isinstance(storage, RedisStorage):
        seconds, micros = storage.conn.time()
        return seconds + micros / 1e6
    if isinstance(storage, PostgresStorage):
        [(stamp,)] = storage.sql("select extract(epoch from clock_timestamp())", results=True)
        return float(stamp)
    return time.time()


def check_reachable(storage: BaseStorage, settings: Settings) -> None:
    """Touch the shared queue once, so a wrong URL fails now and in one line.

    Raises:
        ConfigError: the server cannot be reached or refuses us (password hidden).
    """
    if not shared(storage) or settings.queue_url is None:
        return
    url = settings.queue_url.reveal()
    try:
        storage.queue_size()
    except Exception as exc:  # redis and psycopg errors share no base class
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        password = _password(url)
        if password:
            reason = reason.replace(password, "***")
        raise ConfigError(
            f"{VARIABLE}: cannot use the queue at {redact_url(url)}: {reason}"
        ) from None


def missing_driver(settings: Settings) -> str | None:
    """The pip extra to install when the URL's driver is absent, else None."""
    kind = kind_of(settings)
    if kind == "sqlite":
        return None
    module = "redis" if kind == "redis" else "psycopg"
    try:
        __import__(module)
    except ImportError:
        return f"{VARIABLE} needs the {module} package: pip install 'testio-sync[team]'"
    return None


def _password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None
