"""Store backends for tests: SQLite always; PostgreSQL on 127.0.0.1 when reachable.

A test on PostgreSQL gets a schema of its own in one shared test database (the
URL's ``options`` set its ``search_path``), dropped after the test. A module runs
on both stores by using the ``store_backend`` fixture (``pytestmark``); a test of
something only the SQLite file has is marked ``sqlite_only``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from queue_servers import POSTGRES, unavailable

STORES = ("sqlite", "postgresql")
TEST_DATABASE = "testio_sync_tests"


def _admin(dbname: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(f"{POSTGRES}/{dbname}", autocommit=True, connect_timeout=2)


@contextmanager
def postgres_store() -> Iterator[str]:
    """The URL of an empty schema in the tests' database, dropped after the test."""
    try:
        import psycopg
    except ImportError:
        unavailable("the psycopg package is not installed (pip install -e '.[dev]')")
    try:
        with _admin("postgres") as admin:
            found = admin.execute(
                "select 1 from pg_database where datname = %s", [TEST_DATABASE]
            ).fetchone()
            if not found:
                with suppress(psycopg.errors.DuplicateDatabase):
                    admin.execute(f'create database "{TEST_DATABASE}"')
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES} ({str(exc).splitlines()[0]})")
    schema = f"t_{secrets.token_hex(6)}"
    with _admin(TEST_DATABASE) as conn:
        conn.execute(f'create schema "{schema}"')
    url = f"{POSTGRES}/{TEST_DATABASE}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        from testio_sync.store.postgres import close_postgres

        close_postgres(url)
        with _admin(TEST_DATABASE) as conn:
            # Sessions a test left behind (a killed worker's, another thread's) go first.
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = %s and pid <> pg_backend_pid()"
                " and query ilike %s",
                [TEST_DATABASE, f"%{schema}%"],
            )
            conn.execute(f'drop schema if exists "{schema}" cascade')
