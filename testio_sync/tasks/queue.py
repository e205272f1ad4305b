"""The huey instance: a SQLite queue in its own file, next to (not inside) the app database.

Keeping the queue apart means a long write on ``cache.db`` never makes an
enqueue fail with "database is locked". The instance is built at import, as
``huey_consumer testio_sync.tasks.huey`` needs; ``configure`` points a process elsewhere
(tests, the demo) before anything is enqueued.
"""

from __future__ import annotations

from pathlib import Path

from huey import SqliteHuey

from testio_sync.settings import Settings, home_from_env, touch_private

QUEUE_NAME = "testio-sync"

_settings: Settings | None = None


def _storage_file(home: Path) -> str:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(touch_private(home / "queue.db"))


huey = SqliteHuey(
    QUEUE_NAME,
    filename=_storage_file(home_from_env()),
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
    filename = _storage_file(settings.home)
    if huey.storage_kwargs.get("filename") != filename:
        huey.storage.close()
        huey.storage_kwargs["filename"] = filename
        huey.storage = huey.create_storage()
