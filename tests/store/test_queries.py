"""Read API: counts, scoping, bug-fetch selection, pagination, aggregates, freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testio_sync.errors import StoreError
from testio_sync.store import queries, save
from testio_sync.store.models import Bug

from . import payloads as api


def _end(day: int) -> str:
    return f"2026-03-{day:02d}T12:00:00+00:00"


@pytest.fixture
def catalog(db, now: datetime) -> None:
    """Product 1: five tests ending on days 1-5 (+ one not started); product 2: one test."""
    save.save_products([api.product(1), api.product(2, name="App")], now=now)
    save.save_features(1, [api.feature(11), api.feature(12)], now=now)
    tests = [api.exploratory_test(100 + d, end_at=_end(d), status="locked") for d in range(1, 6)]
    tests[0]["status"] = "archived"
    tests.append(api.exploratory_test(106, end_at=_end(20), status="waiting", testing_type=None))
    save.save_tests(1, tests, now=now)
    save.save_tests(2, [api.exploratory_test(201, product_id=2, created_by="Pete")], now=now)
    save.save_bugs(
        [101, 102, 201],
        {
            101: api.bugs_of_every_status(101, 1),
            102: [api.bug(9, test_id=102, author="Una")],
            201: [api.bug(20, test_id=201, author="Vic")],
        },
        now=now,
        reject_reasons=api.REJECT_REASONS,
    )


def test_entity_counts_cover_everything_or_only_the_given_products(catalog) -> None:
    """Scoped users are that scope's customers plus the testers of its bugs."""
    assert queries.entity_counts() == {
        "products": 2,
        "features": 2,
        "tests": 7,
        "bugs": 6,
        "users": 6,
    }
    assert queries.entity_counts([1]) == {
        "products": 1,
        "features": 2,
        "tests": 6,
        "bugs": 5,
        "users": 4,
    }
    assert queries.entity_counts([2])["users"] == 2


def test_tests_needing_bugs_follow_the_ttl_and_finality_rules(catalog, now) -> None:
    """Final bugs never; others never fetched or fetched longer than ttl ago."""
    due = queries.tests_needing_bugs(product_ids=[1], since=None, ttl_s=3600, now=now)
    assert due == [106, 105, 104, 103]
    later = now + timedelta(hours=2)
    due = queries.tests_needing_bugs(product_ids=[1], since=None, ttl_s=3600, now=later)
    assert due == [106, 105, 104, 103, 102]
    due = queries.tests_needing_bugs(product_ids=None, since=None, ttl_s=3600, now=later)
    assert due == [106, 105, 104, 103, 102, 201]


def test_a_test_not_started_is_skipped_only_while_its_own_row_is_fresh(catalog, now) -> None:
    """Waiting test 106 had no bugs when its row was read; that row's age decides.

    Bugs fetched at ``now``; two hours later (ttl one hour) the stored ``waiting``
    is as old as the bug list and the test may be running: due. Once the test is
    read again, still waiting, it has no bugs yet: not due, although its bug list
    is two hours old. A started test with the same ages is due.
    """
    save.save_bugs([106, 105], {106: [], 105: []}, now=now)
    later = now + timedelta(hours=2)

    def due() -> list[int]:
        found = queries.tests_needing_bugs(
            product_ids=[1], since=None, ttl_s=3600, now=later, test_ids=[105, 106]
        )
        return sorted(found)

    assert due() == [105, 106]
    waiting = api.exploratory_test(106, end_at=_end(20), status="waiting", testing_type=None)
    locked = api.exploratory_test(105, end_at=_end(5), status="locked")
    save.save_tests(1, [waiting, locked], now=later)
    assert due() == [105]
    running = {**waiting, "status": "running"}
    save.save_tests(1, [running], now=later)
    assert due() == [105, 106]


def test_tests_needing_bugs_honours_since_and_explicit_ids(catalog, now) -> None:
    """since keeps tests ending on or after it; test_ids narrows further."""
    since = datetime(2026, 3, 4, tzinfo=UTC)
    due = queries.tests_needing_bugs(product_ids=[1], since=since, ttl_s=0, now=now)
    assert due == [106, 105, 104]
    due = queries.tests_needing_bugs(
        product_ids=None, since=None, ttl_s=0, now=now, test_ids=[101, 102, 103]
    )
    assert due == [103, 102]


def test_list_tests_pages_newest_end_first_with_a_total(catalog) -> None:
    """Pagination keeps the order stable and reports the total in scope."""
    page1, total = queries.list_tests(product_ids=[1], limit=4)
    page2, _ = queries.list_tests(product_ids=[1], limit=4, offset=4)
    assert total == 6
    assert [t.id for t in page1 + page2] == [106, 105, 104, 103, 102, 101]


def test_list_tests_filters_by_status_type_window_and_ids(catalog) -> None:
    """Filters combine with AND; the window is on end_at."""
    archived, total = queries.list_tests(statuses=["archived"])
    assert ([t.id for t in archived], total) == ([101], 1)
    untyped, _ = queries.list_tests(testing_type="coverage", product_ids=[1])
    assert 106 not in {t.id for t in untyped}
    window, _ = queries.list_tests(
        start=datetime(2026, 3, 2, tzinfo=UTC), end=datetime(2026, 3, 4, tzinfo=UTC)
    )
    assert [t.id for t in window] == [103, 102]
    some, total = queries.list_tests(test_ids=[201, 101, 999])
    assert ([t.id for t in some], total) == ([201, 101], 2)


def test_bug_counts_by_test_bucket_statuses_and_severities(catalog) -> None:
    """Auto accepted is apart from actively accepted; tests without bugs show zeros."""
    counts = queries.bug_counts_by_test([101, 103])
    assert counts[101] == {
        "total": 4,
        "by_status": {
            "active_accepted": 1,
            "auto_accepted": 1,
            "rejected": 1,
            "open": 1,
            "unknown": 0,
        },
        "by_severity": {"low": 1, "critical": 1, "high": 2},
    }
    assert counts[103]["total"] == 0
    assert set(queries.bug_counts_by_test(product_ids=[2])) == {201}


def test_a_missing_or_unrecognised_bug_status_is_unknown_never_open(catalog, now) -> None:
    """One bucket definition: Python and SQL agree, and total still counts every bug."""
    no_status = api.bug(30, test_id=103)
    del no_status["status"]
    odd = api.bug(31, test_id=103, status="exported")
    save.save_bugs([103], {103: [no_status, odd, api.bug(32, test_id=103)]}, now=now)

    counts = queries.bug_counts_by_test([103])[103]
    assert counts["total"] == 3
    assert counts["by_status"]["unknown"] == 2
    assert counts["by_status"]["open"] == 1

    B = Bug
    case = queries.bucket_case(B.status, B.auto_accepted)
    in_sql = dict(B.select(B.id, case).tuples())
    in_python = {b.id: queries.status_bucket(b.status, b.auto_accepted) for b in B.select()}
    assert in_sql == in_python
    assert {in_sql[30], in_sql[31], in_sql[32]} == {"unknown", "open"}
    for bucket in queries.STATUS_BUCKETS:
        matched = B.select(B.id).where(queries.bucket_condition(bucket, B.status, B.auto_accepted))
        assert {bid for (bid,) in matched.tuples()} == {
            bid for bid, name in in_python.items() if name == bucket
        }, bucket


def test_the_report_and_analytics_show_the_unknown_bucket(catalog, now) -> None:
    """The report's total still counts every bug; unknown is its own row, never open."""
    from testio_sync.insights.analytics import MetricsQuery, run_query
    from testio_sync.insights.filters import ReportFilters
    from testio_sync.insights.report import build_quality_report

    no_status = api.bug(30, test_id=103)
    del no_status["status"]
    save.save_bugs([103], {103: [no_status, api.bug(32, test_id=103)]}, now=now)

    report = build_quality_report(ReportFilters.parse([1]))
    assert report["bugs_by_status"]["unknown"] == 1
    assert report["total_bugs"] == sum(report["bugs_by_status"].values())
    answer = run_query(MetricsQuery.parse(["bug_count"], ["bug_status"], {"product": 1}))
    by_bucket = {row["bug_status"]: row["bug_count"] for row in answer["rows"]}
    assert by_bucket == {k: v for k, v in report["bugs_by_status"].items() if v}


def test_list_bugs_filters_and_pages(catalog) -> None:
    """Filters by test, product, status and severity; total is before paging."""
    bugs, total = queries.list_bugs(product_ids=[1], limit=2)
    assert (len(bugs), total) == (2, 5)
    rejected, _ = queries.list_bugs(statuses=["rejected"])
    assert [(b.id, b.reject_reason) for b in rejected] == [(4, "not_reproducible")]
    _, total = queries.list_bugs(test_ids=[101], severities=["high"])
    assert total == 2


def test_products_are_found_or_reported_missing(catalog) -> None:
    """find_product and get_test give None for what is not stored."""
    assert queries.product_ids() == [1, 2]
    assert [p.name for p in queries.list_products()] == ["App", "Web shop"]
    assert queries.find_product(3) is None
    assert queries.find_product(2).name == "App"
    assert queries.get_test(999) is None


def test_stored_ids_are_read_per_product(catalog) -> None:
    assert queries.stored_test_ids(1) == {101, 102, 103, 104, 105, 106}
    assert queries.stored_test_ids(2) == {201}


def test_freshness_reports_phase_times_and_the_oldest_test_walk(catalog, now) -> None:
    """data_as_of is None until every product's tests were walked, then the oldest walk."""
    assert queries.oldest_sync_time([1, 2]) is None
    save.touch_product(1, now=now, field="tests_synced_at")
    save.touch_product(2, now=now + timedelta(hours=1), field="tests_synced_at")
    assert queries.oldest_sync_time([1, 2]) == now
    assert queries.oldest_sync_time([2]) == now + timedelta(hours=1)
    rows = {r["id"]: r for r in queries.product_freshness()}
    assert rows[1]["test_count"] == 6
    assert rows[2]["tests_synced_at"] == now + timedelta(hours=1)
    assert rows[1]["features_synced_at"] == now


def test_database_errors_become_store_errors(catalog, db) -> None:
    """A peewee/sqlite failure is translated at the store boundary."""
    with db.connection_context():
        db.execute_sql("DROP TABLE bugs")
    with pytest.raises(StoreError, match="Cannot list bugs"):
        queries.list_bugs()


@pytest.mark.sqlite_only  # the SQLite file on disk
def test_db_file_size_counts_the_file_and_its_log(catalog, db_path) -> None:
    """Size on disk, zero for a missing file."""
    assert queries.db_file_size(db_path) >= db_path.stat().st_size > 0
    assert queries.db_file_size(db_path.with_name("absent.db")) == 0
