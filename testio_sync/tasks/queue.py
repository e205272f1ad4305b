"""The huey instance: a SQLite queue in its own file, next to (not inside) the app database.

Keeping the queue apart means a long write on ``cache.db`` never makes an
enqueue fail with "database is locked". The instance is built at import, as
``huey_consumer testio_sync.tasks.huey`` needs, but its file is made on the first real use
(an enqueue, a consumer's first poll): importing the queue creates nothing.
``configure`` points a process elsewhere (tests, the demo) before that.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from huey import SqliteHuey
from huey.storage import SqliteStorage

from testio_sync.settings import Settings, home_from_env, touch_private

QUEUE_NAME = "testio-sync"

_settings: Settings | None = None


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


huey = SqliteHuey(
    QUEUE_NAME,
    filename=str(home_from_env() / "queue.db"),
    storage_class=LazySqliteStorage,
    journal_mode="wal",
    timeout=15,
    results=False,  # callers read outcomes from sync_events, never from huey
    utc=True,
)


def current_settings() -> Settings:
    """The settings of this process: from ``configure`` or else the environment."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def configure(settings: Settings) -> None:
    """Use ``settings`` in this process, moving the queue to its data directory."""
    global _settings
    _settings = settings
    settings.ensure_home()
    filename = str(settings.queue_path)
    if huey.storage_kwargs.get("filename") != filename:
        huey.storage.close()
        huey.storage_kwargs["filename"] = filename
        huey.storage = huey.create_storage()
