"""A token that tells whether the mirror's committed data may have changed.

Two reads under the same token see the same data, so an answer computed under
a token can be given again while the token holds (``insights/answer_cache``).
A token never stays the same across a commit; it may change without one (the
cache then misses, which costs time, never correctness).

- SQLite: ``PRAGMA data_version`` on a connection of its own that never writes
  changes whenever any other connection, in any process, commits. The file's
  inode is part of the token: a mirror set aside and replaced is another file.
- PostgreSQL: the read runs in a read-only ``REPEATABLE READ`` transaction, and
  the token is that transaction's snapshot (``pg_current_snapshot()``): by MVCC,
  two transactions with equal snapshots see exactly the same rows.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from testio_sync.store import backend
from testio_sync.store.models import database


class _SqliteWatch:
    """One read-only connection per database file, asked for its ``data_version``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inode: int | None = None

    def token(self) -> Hashable | None:
        try:
            inode = os.stat(self.path).st_ino
        except OSError:
            return None
        with self._lock:
            try:
                if self._conn is None or inode != self._inode:
                    self._reopen(inode)
                assert self._conn is not None
                (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                self._close()
                return None
        return ("sqlite", self.path, inode, int(version))

    def _reopen(self, inode: int) -> None:
        self._close()
        self._conn = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=15
        )
        self._inode = inode

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._inode = None


_watches: dict[str, _SqliteWatch] = {}
_watches_lock = threading.Lock()


def _watch(path: str) -> _SqliteWatch:
    with _watches_lock:
        watch = _watches.get(path)
        if watch is None:
            watch = _watches[path] = _SqliteWatch(path)
        return watch


@contextmanager
def data_version(db: Any = None) -> Iterator[Hashable | None]:
    """Yield the token of the data that reads inside the block see (None: unknown).

    On PostgreSQL the block's reads run in the transaction the token describes,
    on this thread's connection; on SQLite the token is taken before the reads
    begin, so what they see is at least as new as the token says.
    """
    target = database.obj if db is None else db
    if target is None:
        yield None
        return
    if not backend.is_postgres(target):
        yield _watch(str(target.database)).token()
        return
    with target.connection_context(), target.atomic():
        target.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        (snapshot,) = target.execute_sql("SELECT pg_current_snapshot()::text").fetchone()
        yield ("postgresql", backend.mirror_key(target, b"data-version"), snapshot)
