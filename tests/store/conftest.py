"""Store fixtures: a real SQLite file per test and a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from peewee import SqliteDatabase

from testio_sync.store.db import close_database, open_database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[SqliteDatabase]:
    database = open_database(db_path)
    yield database
    close_database(db_path)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
