"""Store fixtures: a real store per test (a SQLite file, then a PostgreSQL schema) and a
fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import testsupport
from peewee import Database

from testio_sync.store.db import close_database, open_database
from testio_sync.store.postgres import open_postgres


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


@pytest.fixture
def db(db_path: Path, store_backend: str) -> Iterator[Database]:
    """The store under test, on each engine in turn (``store_backend``)."""
    if store_backend == "postgresql":
        assert testsupport.STORE_URL is not None
        yield open_postgres(testsupport.STORE_URL)
        return
    database = open_database(db_path)
    yield database
    close_database(db_path)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
