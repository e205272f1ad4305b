"""Kept ``query_metrics`` answers and list pages: given again only while the data is unchanged.

Each test runs on both stores; the counts are the simulator's own, so a kept answer
that outlived a change of the data fails them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from peewee import Database
from sync.support import WITH_BUGS
from sync.support import sync as run_sync
from test_analytics import world_bugs, world_tests
from testsupport import make_settings

from testio_sync.insights.analytics import MetricsQuery, run_query
from testio_sync.insights.answer_cache import AnswerCache
from testio_sync.mcp_server import build_server
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.data_version import data_version
from testio_sync.store.db import open_store
from testio_sync.store.models import Product, database
from testio_sync.store.postgres import connect_postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sync(service: SyncService) -> None:
    result = run_sync(service, phases=WITH_BUGS)
    assert result.succeeded, result.errors


def synced_store(home: Path, url: str) -> tuple[Settings, Database]:
    """A store synced from the simulator at ``url``, opened: its settings and database."""
    settings = make_settings(home, url)
    sync(SyncService(settings))
    return settings, open_store(settings)


def executed_bugs(sim: Simulator) -> int:
    return len(world_bugs(sim, world_tests(sim)))


def test_an_answer_is_computed_once_per_data_version_and_again_after_a_sync(
    fresh_server: tuple[Simulator, str], home: Path, store_backend: str
) -> None:
    sim, url = fresh_server
    service = SyncService(make_settings(home, url, cache_ttl_s=0))
    sync(service)
    cache = AnswerCache()
    query = MetricsQuery.parse(["bug_count"])
    computed: list[dict[str, Any]] = []

    def compute() -> dict[str, Any]:
        computed.append(run_query(query))
        return computed[-1]

    first = cache.answer(query, compute)
    again = cache.answer(query, compute)
    assert len(computed) == 1 and again == first
    assert first["rows"][0]["bug_count"] == executed_bugs(sim)
    again["rows"].clear()  # a caller's change never reaches the kept answer
    assert cache.answer(query, compute)["rows"] == first["rows"]

    changes = sim.advance(hours=72)
    assert changes["new_bugs"] or changes["deleted_tests"] or changes["status_changes"]
    sync(service)
    after = cache.answer(query, compute)
    assert len(computed) == 2
    assert after["rows"][0]["bug_count"] == executed_bugs(sim)
    assert after["rows"][0]["bug_count"] != first["rows"][0]["bug_count"]


@pytest.mark.sqlite_only
def test_a_commit_by_another_process_changes_the_sqlite_version(
    fresh_server: tuple[Simulator, str], home: Path, store_backend: str
) -> None:
    settings, _ = synced_store(home, fresh_server[1])
    with data_version() as before, data_version() as same:
        assert before == same and before is not None
    other = sqlite3.connect(settings.db_path)  # not ours: no pool, no peewee
    assert other.execute("UPDATE products SET name = name || ' (renamed)'").rowcount
    other.commit()
    other.close()
    with data_version() as after:
        assert after != before


@pytest.mark.postgresql_only
def test_on_postgresql_the_reads_of_a_version_see_its_snapshot(
    fresh_server: tuple[Simulator, str], home: Path, store_backend: str
) -> None:
    """A commit made while a version's block runs is not seen by it, and changes the next."""
    settings, db = synced_store(home, fresh_server[1])
    count = "SELECT COUNT(*) FROM bugs"
    with data_version() as version:
        (before,) = db.execute_sql(count).fetchone()
        writer = connect_postgres(settings.database_url.reveal(), migrate=False)
        try:
            with writer.connection_context(), writer.atomic():
                writer.execute_sql("DELETE FROM bugs WHERE id = (SELECT MIN(id) FROM bugs)")
        finally:
            writer.close()
        (inside,) = db.execute_sql(count).fetchone()
    assert inside == before
    with data_version() as later:
        (now,) = db.execute_sql(count).fetchone()
    assert now == before - 1 and later != version


@pytest.mark.anyio
async def test_the_tool_answers_the_new_data_after_a_sync(
    fresh_server: tuple[Simulator, str], home: Path, store_backend: str
) -> None:
    sim, url = fresh_server
    settings = make_settings(home, url, cache_ttl_s=0)
    service = SyncService(settings)
    sync(service)
    args = {"metrics": ["bug_count"]}
    async with Client(build_server(settings)) as client:
        one = await client.call_tool("query_metrics", args)
        two = await client.call_tool("query_metrics", args)
        assert one.structured_content == two.structured_content
        assert one.structured_content["rows"][0]["bug_count"] == executed_bugs(sim)
        sim.advance(hours=72)
        sync(service)
        three = await client.call_tool("query_metrics", args)
    counted = three.structured_content["rows"][0]["bug_count"]
    assert counted == executed_bugs(sim) != one.structured_content["rows"][0]["bug_count"]
    assert json.loads(three.content[0].text) == three.structured_content


def test_a_list_page_is_read_again_only_when_the_data_changed_since(
    fresh_server: tuple[Simulator, str], home: Path, store_backend: str
) -> None:
    """The list tools' pages: a commit through the store's own connections is seen."""
    sim, url = fresh_server
    synced_store(home, url)
    pages = AnswerCache()
    reads: list[dict[str, Any]] = []

    def read() -> dict[str, Any]:
        with database.connection_context():
            reads.append({"names": sorted(p.name for p in Product.select(Product.name))})
        return reads[-1]

    first = pages.answer("page", read)
    assert pages.answer("page", read) == first and len(reads) == 1
    assert first["names"] == sorted(p.name for p in sim.world.products.values())

    with database.connection_context(), database.atomic():
        Product.update(name=Product.name.concat(" (renamed)")).execute()
    later = pages.answer("page", read)
    assert len(reads) == 2
    assert later["names"] == sorted(f"{p.name} (renamed)" for p in sim.world.products.values())
