"""PostgreSQL's write path: pipelined saves fail whole, version 8's covering index answers alone."""

from __future__ import annotations

from datetime import datetime

import pytest

from testio_sync.errors import StoreError
from testio_sync.store import queries, save, upkeep
from testio_sync.store.models import Bug, User, database

from . import payloads as api

pytestmark = pytest.mark.postgresql_only


@pytest.fixture
def stored_test(db, now: datetime) -> int:
    save.save_products([api.product(1)], now=now)
    save.save_tests(1, [api.exploratory_test(101)], now=now)
    return 101


def test_a_write_that_fails_in_the_pipeline_leaves_nothing_and_the_store_goes_on(
    stored_test: int, now: datetime
) -> None:
    """The failing upsert is only seen at the end of the pipeline: the whole save is undone,
    the error is a one-line StoreError, and the same connection saves again afterwards."""
    with database.connection_context():
        database.execute_sql(
            "ALTER TABLE bugs ADD CONSTRAINT no_boom CHECK (title IS DISTINCT FROM 'boom')"
        )
    bad = {**api.bug(1, test_id=stored_test), "title": "boom"}
    good = api.bug(2, test_id=stored_test, author="Other Tester")
    with pytest.raises(StoreError, match="no_boom"):
        save.save_bugs([stored_test], {stored_test: [good, bad]}, now=now)
    with database.connection_context():
        assert Bug.select().count() == 0
        assert User.select().where(User.kind == "tester").count() == 0
        docs = database.execute_sql("SELECT COUNT(*) FROM search_docs WHERE entity = 'bug'")
        assert docs.fetchone()[0] == 0
    assert queries.get_test(stored_test).bugs_synced_at is None
    counts = save.save_bugs([stored_test], {stored_test: [good]}, now=now)
    assert (counts.new, counts.skipped_ids) == (1, [])
    assert queries.get_test(stored_test).bugs_synced_at == now


def test_counting_bugs_by_test_reads_the_covering_index_alone(
    stored_test: int, now: datetime
) -> None:
    """Version 8: ``bugs_analytics`` carries the id, so once vacuumed a count needs no table."""
    bugs = [api.bug(i, test_id=stored_test) for i in range(1, 121)]  # past the 50-row base
    with database.connection_context():  # one session, as a run's writer thread holds
        save.save_bugs([stored_test], {stored_test: bugs}, now=now)
        assert "bugs" in upkeep.tidy()
    with database.connection_context(), database.atomic():
        database.execute_sql("SET LOCAL enable_seqscan = off")
        database.execute_sql("SET LOCAL enable_bitmapscan = off")
        plan = database.execute_sql(
            "EXPLAIN SELECT status, COUNT(DISTINCT id) FROM bugs WHERE test_id = %s GROUP BY 1",
            [stored_test],
        ).fetchall()
    assert "Index Only Scan using bugs_analytics" in "\n".join(row[0] for row in plan)
