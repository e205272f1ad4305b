"""Which store a benchmark measures: a SQLite data directory or a PostgreSQL database.

``--database-url`` (default: ``TESTIO_SYNC_DATABASE_URL``) selects PostgreSQL; the
URL may name a schema through ``options=-csearch_path%3D<schema>``. ``scratch``
gives a sync benchmark an empty schema of its own per run, dropped afterwards.
The password of a URL is never printed (``label``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

VARIABLE = "TESTIO_SYNC_DATABASE_URL"


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get(VARIABLE) or None,
        help=f"measure this PostgreSQL store (default: ${VARIABLE}; unset: SQLite)",
    )


def label(url: str | None, home: Path) -> str:
    """The store as the figures name it, without a password."""
    if url is None:
        return f"SQLite {home / 'cache.db'}"
    from testio_sync.settings import redact_url

    return f"PostgreSQL {redact_url(url)}"


def open_bench_store(home: Path, url: str | None) -> None:
    """Bind the models to the store measured (creating or upgrading its schema)."""
    if url is None:
        from testio_sync.store.db import open_database

        open_database(home / "cache.db")
    else:
        from testio_sync.store.postgres import open_postgres

        open_postgres(url)


def close_bench_store(home: Path, url: str | None) -> None:
    if url is None:
        from testio_sync.store.db import close_database

        close_database(home / "cache.db")
    else:
        from testio_sync.store.postgres import close_postgres

        close_postgres(url)


def is_built(home: Path, url: str | None) -> bool:
    """Whether the store already holds a synced mirror (a benchmark then reuses it)."""
    if url is None:
        return (home / "cache.db").exists()
    from testio_sync.store import queries

    open_bench_store(home, url)
    return queries.entity_counts()["tests"] > 0


def _with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextlib.contextmanager
def scratch(url: str) -> Iterator[str]:
    """The URL of a new empty schema in ``url``'s database, dropped afterwards."""
    import psycopg

    from testio_sync.store.postgres import close_postgres, conninfo

    schema = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    scoped = _with_schema(url, schema)
    try:
        yield scoped
    finally:
        close_postgres(scoped)
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
