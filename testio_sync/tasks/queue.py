"""The huey instance: a SQLite queue in its own file, or a queue on a shared server.

Unset ``TESTIO_SYNC_QUEUE_URL`` keeps the queue in ``queue.db`` next to (not inside)
the app database, so a long write on ``cache.db`` never makes an enqueue fail with
"database is locked". A Redis or PostgreSQL URL puts it on that server, where
several workers share it (``tasks.backends``). The instance is built at import, as
``huey_consumer testio_sync.tasks.huey`` needs, but its file or tables are made on
the first real use: importing the queue creates nothing. ``configure`` points a
process elsewhere (tests, the demo) before that.
"""

from __future__ import annotations

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey
from huey.constants import EmptyData
from huey.storage import PostgresStorage, RedisStorage

from testio_sync.errors import ConfigError
from testio_sync.settings import Settings, home_from_env, queue_url_from_env
from testio_sync.tasks.backends import (
    check_reachable,
    missing_driver,
    queue_name,
    shared,
    storage_kwargs,
)

_settings: Settings | None = None


def _initial_settings() -> Settings:
    """The queue the environment names; SQLite when it names none usable.

    An unusable URL is not an error here (an import must not fail): every entry
    point reads the settings and calls ``configure``, which reports it in one line.
    """
    try:
        settings = Settings(home=home_from_env(), queue_url=queue_url_from_env())
    except ConfigError:
        settings = Settings(home=home_from_env())
    if missing_driver(settings):
        settings = Settings(home=home_from_env())
    return settings


def _build() -> Huey:
    settings = _initial_settings()
    kwargs = storage_kwargs(settings)
    storage = kwargs["storage_class"]
    kind = (
        RedisHuey
        if issubclass(storage, RedisStorage)
        else PostgresHuey
        if issubclass(storage, PostgresStorage)
        else SqliteHuey
    )
    # results=False: outcomes live in sync_events
    return kind(queue_name(settings), results=False, utc=True, **kwargs)


huey = _build()
_storage_key: str = f"{huey.name} {huey.storage_kwargs.get('filename') or ''}"


def current_settings() -> Settings:
    """The settings of this process: from ``configure`` or else the environment."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def configure(settings: Settings) -> None:
    """Use ``settings`` in this process, moving the queue to its data directory or server.

    Raises:
        ConfigError: the queue's server cannot be reached, or its driver is missing.
    """
    global _settings, _storage_key
    problem = missing_driver(settings)
    if problem:
        raise ConfigError(problem)
    _settings = settings
    settings.ensure_home()
    name = queue_name(settings)
    key = f"{name} " + (
        settings.queue_url.reveal() if settings.queue_url else str(settings.queue_path)
    )
    if key == _storage_key:
        return
    kwargs = storage_kwargs(settings)
    huey.storage.close()
    huey.name = name
    huey.storage_class = kwargs.pop("storage_class")
    huey.storage_kwargs = kwargs
    huey.storage = huey.create_storage()
    _storage_key = key
    try:
        check_reachable(huey.storage, settings)
    except ConfigError:
        _storage_key = ""  # try again on the next call
        raise


def queue_is_shared() -> bool:
    """True when the queue lives on a server several workers may take jobs from."""
    return shared(huey.storage)


def claim_once(key: str, *, forget: str | None = None) -> bool:
    """Take ``key`` in the queue's own store; False when some process took it first.

    The queue's server decides (Redis ``HSETNX``, a PostgreSQL or SQLite primary
    key), so processes on several hosts agree. ``forget`` names an older key of the
    same kind to drop, so the store keeps one such key, not one per claim.
    """
    if not huey.storage.put_if_empty(key, b"1"):
        return False
    if forget is not None and forget != key:
        huey.storage.delete_data(forget)
    return True


def peek(key: str) -> bytes | None:
    value = huey.storage.peek_data(key)
    return None if value is EmptyData else value


def put(key: str, value: bytes) -> None:
    huey.storage.put_data(key, value)
