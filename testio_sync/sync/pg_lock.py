"""The sync lock on a PostgreSQL store: workers on several hosts, one sync at a time.

A file lock only excludes processes that share a disk, so on a PostgreSQL store the
sync lock is a session-level advisory lock (``pg_try_advisory_lock``) on a key of the
mirror (``backend.mirror_key``: database and schema), held on a connection of its
own for the whole run. Beside it, the ``sync_lock`` row says who holds it: host, PID,
process start time, run id, the server's time of taking it and of the last heartbeat,
and the holder's backend PID.

* A holder that dies, however it dies, ends its session: the server drops the lock at
  once and the row's backend no longer holds it, so the row reads "dead". A host that
  vanishes without closing its socket is found by TCP keepalives (set per session
  below), after about a minute.
* A holder that lives but stops heartbeating (stopped, stuck event loop) keeps its
  session, and an advisory lock cannot be taken from a live session. After
  ``stale_after_s`` without a heartbeat (one hour, the file lock's bound) a waiting
  worker ends the hung holder's backend with ``pg_terminate_backend``, then takes the
  lock; the new row's ``took_over`` and the new run's warnings say whom it ended.
  The hung process, if it ever resumes, finds its session gone and stops writing.

Heartbeats and ages use the server's clock, so hosts whose clocks differ agree.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import psutil
from peewee import Database, PeeweeException

from testio_sync.dates import to_stored
from testio_sync.errors import ConfigError, SyncLockedError
from testio_sync.settings import Settings, redact_url
from testio_sync.store import backend
from testio_sync.store.models import database
from testio_sync.sync.lock import SyncLock, read_holder
from testio_sync.sync.lock_record import Attempt, describe_holder, holder_gone, span

logger = logging.getLogger("testio_sync.lock")

SYNC_LOCK_SALT = b"testio-sync:sync"
LOCK_NAME = "sync"
STALE_AFTER_S = 3600.0  # the file lock's bound: no heartbeat for an hour is a hung holder
HEARTBEAT_S = 30.0
CONNECT_TIMEOUT_S = 5
TERMINATE_WAIT_MS = 5000
# Server-side keepalives: a holder whose host vanished loses its session in ~1 min.
KEEPALIVES = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10"}
KEEPALIVE_COUNT = "3"

_COLUMNS = (
    "run_id",
    "host",
    "pid",
    "create_time",
    "backend_pid",
    "acquired_at",
    "heartbeat_at",
    "took_over",
)
# The holder row, its silence by the server's clock, and who holds the advisory lock now.
_HOLDER_SQL = (
    'SELECT "run_id", "host", "pid", "create_time", "backend_pid", "acquired_at",'
    ' "heartbeat_at", "took_over", EXTRACT(EPOCH FROM now() - "heartbeat_at"),'
    " (SELECT k.pid FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted"
    "  AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    "  AND k.classid::bigint = %s AND k.objid::bigint = %s AND k.objsubid = 1 LIMIT 1)"
    ' FROM (SELECT 1) AS one LEFT JOIN "sync_lock" ON "name" = %s'
)


def lock_key(db: Database) -> int:
    """The mirror's advisory key for the sync lock (distinct from its write key)."""
    return backend.mirror_key(db, SYNC_LOCK_SALT)


def _key_parts(key: int) -> list[int]:
    """``pg_locks`` shows a bigint key as two unsigned 32-bit halves."""
    return [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF]


def who(holder: dict[str, Any]) -> str:
    return (
        f"PID {holder.get('pid', '?')} on {holder.get('host', '?')} "
        f"(run {holder.get('run_id', '?')}, since {holder.get('acquired_at', '?')})"
    )


def _holder_of(row: tuple[Any, ...] | None, stale_after_s: float) -> dict[str, Any] | None:
    """The record of one ``_HOLDER_SQL`` row, with ``stale`` (reason or None); None: free."""
    if row is None:
        return None
    values = dict(zip(_COLUMNS, row[: len(_COLUMNS)], strict=True))
    silent_s, lock_pid = row[len(_COLUMNS)], row[len(_COLUMNS) + 1]
    if values["run_id"] is None:  # no row: free, or a holder between its lock and its row
        if lock_pid is None:
            return None
        return {"store": "postgresql", "backend_pid": lock_pid, "run_id": None, "stale": None}
    for stamp in ("acquired_at", "heartbeat_at"):
        values[stamp] = to_stored(values[stamp]) if values[stamp] is not None else None
    record = {**values, "started_at": values["acquired_at"], "store": "postgresql"}
    if lock_pid is None:  # a clean release deletes the row: this holder died
        stale = "holder is dead (its database session ended)"
    elif lock_pid != values["backend_pid"]:  # a new holder is writing its row right now
        return {"store": "postgresql", "backend_pid": lock_pid, "run_id": None, "stale": None}
    elif gone := holder_gone(values):  # its session ends a moment after the process
        stale = gone
    elif silent_s is not None and float(silent_s) > stale_after_s:
        stale = (
            f"holder is hung: no heartbeat for {span(float(silent_s))} "
            f"(limit {span(stale_after_s)})"
        )
    else:
        stale = None
    record["silent_seconds"] = round(float(silent_s), 1) if silent_s is not None else None
    record["stale"] = stale
    return record


def describe_pg_holder(
    db: Database | None = None, *, stale_after_s: float = STALE_AFTER_S
) -> dict[str, Any] | None:
    """The holder row plus ``stale`` (reason or None), read on the bound database."""
    target = database.obj if db is None else db
    key = lock_key(target)
    with target.connection_context():
        row = target.execute_sql(_HOLDER_SQL, [*_key_parts(key), LOCK_NAME]).fetchone()
    return _holder_of(row, stale_after_s)


def lock_holder(
    settings: Settings, *, stale_after_s: float = STALE_AFTER_S, live_only: bool = True
) -> dict[str, Any] | None:
    """Who holds the mirror's sync lock, on either store; what ``status`` shows.

    ``live_only`` leaves out a dead or hung holder (as ``read_holder`` does); else the
    record comes with ``stale`` (why it may be replaced, or None).
    """
    if settings.database_url is None:
        if live_only:
            return read_holder(settings.lock_path, stale_after_s=stale_after_s)
        return describe_holder(settings.lock_path, stale_after_s=stale_after_s)
    holder = describe_pg_holder(stale_after_s=stale_after_s)
    if holder is None or not live_only:
        return holder
    return None if holder.pop("stale") else holder


def sync_lock(settings: Settings, *, run_id: str, timeout_s: float | None = None) -> SyncLock:
    """The sync lock of ``settings``' mirror: advisory on PostgreSQL, else the file lock."""
    wait = settings.lock_timeout_s if timeout_s is None else timeout_s
    if settings.database_url is None:
        return SyncLock(settings.lock_path, run_id=run_id, timeout_s=wait)
    return PostgresSyncLock(settings.database_url.reveal(), run_id=run_id, timeout_s=wait)


class PostgresSyncLock(SyncLock):
    """``SyncLock`` on a PostgreSQL store; the same waiting, heartbeat and ``lost`` rules.

    Only the three primitives differ: one attempt to claim, one heartbeat, the release.
    """

    def __init__(
        self,
        url: str,
        *,
        run_id: str,
        timeout_s: float = 30.0,
        stale_after_s: float = STALE_AFTER_S,
        heartbeat_s: float = HEARTBEAT_S,
        poll_s: float = 0.2,
    ) -> None:
        super().__init__(
            Path(os.devnull),
            run_id=run_id,
            timeout_s=timeout_s,
            stale_after_s=stale_after_s,
            heartbeat_s=heartbeat_s,
            poll_s=poll_s,
        )
        self.url = url
        self.where = redact_url(url)
        self._conn: Any = None
        self._key: int | None = None
        self._took_over: str | None = None

    # -- the dedicated session ---------------------------------------------------------

    def _session(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        import psycopg

        from testio_sync.store.postgres import conninfo, open_postgres, scrub

        try:
            self._key = lock_key(open_postgres(self.url))
            conn = psycopg.connect(
                conninfo(self.url),
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=f"testio-sync sync lock {self.run_id}"[:63],
            )
            for name, value in (*KEEPALIVES.items(), ("tcp_keepalives_count", KEEPALIVE_COUNT)):
                conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        except (psycopg.Error, PeeweeException) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"Cannot use the sync lock in {self.where}: {scrub(reason, self.url)}"
            ) from None
        self._conn = conn
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken session: the server drops it anyway
                logger.debug("closing the sync lock session failed", exc_info=True)

    def _read_holder(self, conn: Any) -> dict[str, Any] | None:
        row = conn.execute(_HOLDER_SQL, [*_key_parts(self._key or 0), LOCK_NAME]).fetchone()
        return _holder_of(row, self.stale_after_s)

    # -- the three primitives ----------------------------------------------------------

    def _attempt(self) -> Attempt:
        import psycopg

        conn = self._session()
        try:
            with conn.transaction():
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", [self._key]).fetchone()[0]
                if got:
                    self._write_row(conn)
            if not got:
                holder = self._read_holder(conn)
                if holder and (holder.get("stale") or "").startswith("holder is hung"):
                    self._end_hung(conn, holder)
                return Attempt(False, holder=holder)
        except psycopg.Error as exc:
            self._close()  # a session that failed midway may hold the lock: end it
            logger.warning("Sync lock attempt failed in %s: %s", self.where, exc)
            return Attempt(False)
        self._lost.clear()
        self._lost_to = None
        warning, self._took_over = self._took_over, None
        self.warnings = [warning] if warning else []
        return Attempt(True, warning=warning)

    def _write_row(self, conn: Any) -> None:
        record = {
            "pid": os.getpid(),
            "create_time": psutil.Process().create_time(),
            "host": socket.gethostname(),
            "run_id": self.run_id,
            "token": self._token,
        }
        row = conn.execute(
            'INSERT INTO "sync_lock" ("name", "run_id", "token", "host", "pid", "create_time",'
            ' "backend_pid", "acquired_at", "heartbeat_at", "took_over")'
            " VALUES (%s, %s, %s, %s, %s, %s, pg_backend_pid(), now(), now(), %s)"
            ' ON CONFLICT ("name") DO UPDATE SET "run_id" = excluded."run_id",'
            ' "token" = excluded."token", "host" = excluded."host", "pid" = excluded."pid",'
            ' "create_time" = excluded."create_time", "backend_pid" = excluded."backend_pid",'
            ' "acquired_at" = excluded."acquired_at", "heartbeat_at" = excluded."heartbeat_at",'
            ' "took_over" = excluded."took_over"'
            ' RETURNING "acquired_at"',
            [
                LOCK_NAME,
                record["run_id"],
                record["token"],
                record["host"],
                record["pid"],
                record["create_time"],
                self._took_over,
            ],
        ).fetchone()
        stamp = to_stored(row[0])
        self._record = {**record, "started_at": stamp, "heartbeat_at": stamp}

    def _end_hung(self, conn: Any, holder: dict[str, Any]) -> None:
        """End the backend of a holder silent past the bound (re-checked in the statement)."""
        ended = conn.execute(
            'SELECT pg_terminate_backend("backend_pid"::int, %s) FROM "sync_lock"'
            ' WHERE "name" = %s AND "backend_pid" = %s'
            ' AND "heartbeat_at" < now() - make_interval(secs => %s)',
            [TERMINATE_WAIT_MS, LOCK_NAME, holder["backend_pid"], self.stale_after_s],
        ).fetchone()
        if ended and ended[0]:
            self._took_over = (
                f"Ended the session of a hung sync lock holder, {who(holder)}: {holder['stale']}"
            )
            logger.warning(self._took_over)

    def _beat_once(self) -> bool:
        import psycopg

        conn = self._conn
        if conn is None:
            self._mark_lost(None, "its database session is closed")
            return True
        try:
            changed = conn.execute(
                'UPDATE "sync_lock" SET "heartbeat_at" = now() WHERE "name" = %s AND "token" = %s',
                [LOCK_NAME, self._token],
            ).rowcount
            if not changed:
                self._mark_lost(self._read_holder(conn), None)
        except psycopg.OperationalError as exc:
            self._mark_lost(None, f"its database session ended ({type(exc).__name__})")
        except psycopg.Error as exc:  # keep trying: the session may still hold the lock
            logger.warning("Sync lock heartbeat failed in %s: %s", self.where, exc)
        return True

    def _try_release(self, *, give_up: bool) -> bool:
        import psycopg

        conn = self._conn
        if self._record is not None and conn is not None and not conn.closed:
            try:
                conn.execute(
                    'DELETE FROM "sync_lock" WHERE "name" = %s AND "token" = %s',
                    [LOCK_NAME, self._token],
                )
                conn.execute("SELECT pg_advisory_unlock(%s)", [self._key])
            except psycopg.Error as exc:  # closing the session below frees the lock anyway
                logger.warning("Could not clear the sync lock in %s: %s", self.where, exc)
        self._close()
        self._record = None
        return True

    def _timeout_error(self, holder: dict[str, Any] | None) -> SyncLockedError:
        self._close()
        if holder is None or holder.get("run_id") is None:
            return super()._timeout_error(None)
        return SyncLockedError(
            f"Another sync holds the lock: {who(holder)}, last heartbeat "
            f"{holder.get('heartbeat_at', '?')}. Gave up after {self.timeout_s:g} s; "
            "try again when it finishes.",
            holder=holder,
        )
