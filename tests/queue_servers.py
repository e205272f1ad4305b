"""Queue backends for tests: SQLite always; Redis and PostgreSQL on 127.0.0.1 when reachable.

Each test gets a queue of its own (an empty Redis database number, a fresh
PostgreSQL database) and it is cleaned up after. A server that cannot be reached
skips the test with the reason, unless ``TESTIO_SYNC_REQUIRE_SERVICES=1`` (CI)
turns that into a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Servers elsewhere: set these (a Redis URL without a database number, a PostgreSQL URL
# without a database name, for a user that may create databases).
REDIS = os.environ.get("TESTIO_SYNC_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
POSTGRES = os.environ.get("TESTIO_SYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
BACKENDS = ("sqlite", "redis", "postgresql")


def unavailable(reason: str) -> None:
    """Skip (or, when CI requires the servers, fail) for a missing server or driver."""
    if os.environ.get("TESTIO_SYNC_REQUIRE_SERVICES") == "1":
        pytest.fail(f"TESTIO_SYNC_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@contextmanager
def redis_queue() -> Iterator[str]:
    """A Redis database number nobody uses, flushed after the test."""
    try:
        import redis
    except ImportError:
        unavailable("the redis package is not installed (pip install -e '.[dev]')")
    numbers = list(range(1, 16))
    secrets.SystemRandom().shuffle(numbers)
    try:
        for number in numbers:
            client = redis.Redis.from_url(f"{REDIS}/{number}", socket_connect_timeout=2)
            if client.dbsize() == 0 and client.set("testio-sync-test", "1", nx=True):
                break
            client.close()
        else:
            unavailable(f"every Redis database number at {REDIS} is in use")
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS} ({exc})")
    try:
        yield f"{REDIS}/{number}"
    finally:
        client.flushdb()
        client.close()


@contextmanager
def postgres_queue() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    try:
        import psycopg
    except ImportError:
        unavailable("the psycopg package is not installed (pip install -e '.[dev]')")
    name = f"testio_queue_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=2)
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES} ({str(exc).splitlines()[0]})")
    with admin:
        admin.execute(f'create database "{name}"')
        try:
            yield f"{POSTGRES}/{name}"
        finally:
            reset_queue()  # close this process's connections first
            admin.execute(f'drop database if exists "{name}" with (force)')


def reset_queue() -> None:
    """Point the queue back at the session's SQLite file, closing any server connection."""
    from pathlib import Path

    from testio_sync.settings import Settings
    from testio_sync.tasks.queue import configure

    configure(Settings(home=Path(os.environ["TESTIO_SYNC_HOME"])))


@contextmanager
def queue_url_for(backend: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
    elif backend == "redis":
        with redis_queue() as url:
            try:
                yield url
            finally:
                reset_queue()
    else:
        with postgres_queue() as url:
            yield url
