"""The sync engine end to end: simulator over 127.0.0.1, a real SQLite file, in-process jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import testsupport
from peewee import fn
from testsupport import TOKEN, make_settings, stored_text

from testio_sync import tasks
from testio_sync.dates import utc_now
from testio_sync.errors import UsageError
from testio_sync.service import SyncService
from testio_sync.simulator import Simulator
from testio_sync.store import queries
from testio_sync.store.models import Bug, ExploratoryTest, SyncEvent, User, database
from testio_sync.sync.types import SyncOptions, SyncPhase, SyncRequest, SyncScope, SyncStatus

from .support import WITH_BUGS, counts, store_ids, sync, truth_counts, truth_ids

pytestmark = pytest.mark.usefixtures("store_backend")  # each test on both stores


@pytest.fixture(scope="module")
def seed_server():
    sim = Simulator(scale="seed", seed=1, token=TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


def test_a_full_seed_sync_with_bugs_stores_exactly_the_simulators_truth(seed_server, home):
    """6 products, 298 features, 724 tests, 8,056 bugs, 45 users: no more, no fewer."""
    sim, url = seed_server
    service = SyncService(make_settings(home, url))
    result = sync(service, phases=WITH_BUGS)
    assert result.status == SyncStatus.SUCCEEDED, result.errors
    assert counts() == {
        "products": 6,
        "features": 298,
        "tests": 724,
        "bugs": 8056,
        "users": 45,
    }
    assert store_ids() == truth_ids(sim)
    assert result.phases_completed == list(WITH_BUGS)
    assert (result.products_synced, result.tests_discovered, result.bugs_refreshed) == (
        6,
        724,
        8056,
    )
    truth = sim.truth()
    with database.connection_context():
        kinds = {
            kind: n
            for kind, n in User.select(User.kind, fn.COUNT(User.id)).group_by(User.kind).tuples()
        }
    assert kinds == {"tester": truth["testers"], "customer": truth["customer_users"]}


def test_a_second_full_sync_changes_nothing_and_stays_within_its_request_budget(fresh_server, home):
    """Nothing new upstream: no new rows, at most 2 requests per product plus the list."""
    sim, url = fresh_server
    service = SyncService(make_settings(home, url))
    sync(service, phases=WITH_BUGS)
    before = counts()
    sim.reset_stats()
    result = sync(service)
    assert result.status == SyncStatus.SUCCEEDED
    assert (result.tests_discovered, result.tests_updated, result.tests_removed) == (0, 0, 0)
    assert counts() == before
    assert sim.stats()["total"] <= 2 * before["products"] + 1


def test_after_two_simulated_days_an_incremental_sync_equals_the_truth_again(fresh_server, home):
    """New tests at the top, status changes and a test deleted deep in the list are all seen."""
    sim, url = fresh_server
    service = SyncService(make_settings(home, url))
    sync(service, phases=WITH_BUGS)
    changes = sim.advance(hours=48)
    result = sync(service)
    assert result.status == SyncStatus.SUCCEEDED, result.errors
    assert store_ids()["tests"] == truth_ids(sim)["tests"]
    assert store_ids()["products"] == truth_ids(sim)["products"]
    assert result.tests_removed == len(changes["deleted_tests"])
    with database.connection_context():
        for test in ExploratoryTest.select():
            assert test.status == sim.world.tests[test.id].status


def test_bugs_of_a_deleted_test_go_with_it(fresh_server, home):
    """Reconciling a deletion removes the test's bugs too (no orphans)."""
    sim, url = fresh_server
    service = SyncService(make_settings(home, url, cache_ttl_s=0))  # 96 h pass: all stale
    sync(service, phases=WITH_BUGS)
    sim.advance(hours=96)
    sync(service, phases=WITH_BUGS)
    with database.connection_context():
        orphans = Bug.select().where(Bug.test.not_in(ExploratoryTest.select(ExploratoryTest.id)))
        assert orphans.count() == 0
    assert store_ids()["bugs"] == truth_ids(sim)["bugs"]


def test_since_stops_the_walk_at_the_first_page_that_ended_before_it(seed_server, home):
    """Only tests ending on or after the date, plus at most one page's spill-over, are stored."""
    sim, url = seed_server
    service = SyncService(make_settings(home, url))
    ends = sorted(t.end_at for t in sim.world.tests.values())
    middle = datetime.fromtimestamp(ends[len(ends) // 2], UTC)
    since = middle.replace(hour=0, minute=0, second=0, microsecond=0)
    result = sync(service, scope=SyncScope(since_date=since))
    assert result.status == SyncStatus.SUCCEEDED
    wanted = {tid for tid, t in sim.world.tests.items() if t.end_at >= since.timestamp()}
    stored = store_ids()["tests"]
    assert wanted <= stored
    assert len(stored - wanted) <= 25 * len(sim.world.products)


def test_product_ids_limit_the_sync_to_those_products(tiny_server, home):
    sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    one = sorted(sim.world.products)[0]
    result = sync(service, scope=SyncScope(product_ids=(one,)))
    assert result.status == SyncStatus.SUCCEEDED
    assert store_ids()["products"] == {one}
    with database.connection_context():
        assert {t.product_id for t in ExploratoryTest.select()} == {one}


def test_a_forced_sync_walks_every_page_and_refetches_features(tiny_server, home):
    sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    sync(service)
    result = sync(service, options=SyncOptions(force_refresh=True))
    assert result.status == SyncStatus.SUCCEEDED
    assert result.features_refreshed == truth_counts(sim)["features"]
    assert store_ids()["tests"] == truth_ids(sim)["tests"]


def test_faults_are_survived_and_only_the_broken_test_is_missing(fresh_server, home):
    """5% 5xx, a rate limit and one broken test: all else arrives, the broken one is recorded."""
    sim, url = fresh_server
    broken = sorted(t for t, v in sim.world.tests.items() if v.status == "archived")[3]
    sim.update_faults(error_rate=0.05, rate_limit_rps=40, broken_test_ids=[broken])
    service = SyncService(make_settings(home, url, retry_max_wait_s=1.0))
    result = sync(service, phases=WITH_BUGS)
    assert result.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL), result.errors
    stored, truth = store_ids(), truth_ids(sim)
    assert stored["tests"] == truth["tests"] - {broken}
    assert stored["products"] == truth["products"]
    assert stored["features"] == truth["features"]
    truth_bugs = {b for b, v in sim.world.bugs.items() if v.test_id != broken}
    assert stored["bugs"] == truth_bugs
    recorded = queries.list_broken_tests()
    assert len(recorded) == 1
    assert any("cannot be fetched" in e for e in result.errors)
    statuses = sim.stats()["by_status"]
    assert any(statuses.get(code) for code in ("502", "503", "504"))


def test_a_broken_test_that_heals_is_fetched_by_the_next_sync_and_resolved(fresh_server, home):
    sim, url = fresh_server
    broken = sorted(t for t, v in sim.world.tests.items() if v.status == "archived")[0]
    sim.update_faults(broken_test_ids=[broken])
    service = SyncService(make_settings(home, url))
    sync(service)
    assert broken not in store_ids()["tests"]
    sim.clear_faults()
    result = sync(service)
    assert result.status == SyncStatus.SUCCEEDED
    assert broken in store_ids()["tests"]
    assert queries.list_broken_tests() == []


def test_a_revoked_token_fails_the_run_fast_and_keeps_the_data(fresh_server, home):
    sim, url = fresh_server
    service = SyncService(make_settings(home, url))
    sync(service, phases=WITH_BUGS)
    before = counts()
    sim.update_faults(token_revoked=True)
    sim.reset_stats()
    result = sync(service, options=SyncOptions(force_refresh=True))
    assert result.status == SyncStatus.FAILED
    assert any("401" in e for e in result.errors)
    assert counts() == before
    # No retries of a refused token: the product list and each stored product's first
    # request travel together, and nothing is sent once the 401 has landed.
    assert sim.stats()["total"] <= 1 + len(sim.truth()["per_product"])


def test_an_unreachable_api_is_a_failure_not_a_success(home):
    """Every API call failing is never reported as success (nor as partial)."""
    service = SyncService(
        make_settings(home, "http://127.0.0.1:9/customer/v2", http_timeout_s=1.0, max_retries=1)
    )
    result = sync(service)
    assert result.status == SyncStatus.FAILED
    assert result.errors
    assert result.duration_seconds > 0


def test_a_success_of_the_full_scope_moves_last_sync_completed_and_a_failure_does_not(
    fresh_server, home
):
    from testio_sync.sync import runs

    sim, url = fresh_server
    service = SyncService(make_settings(home, url))
    assert runs.last_sync_completed() is None
    sync(service, scope=SyncScope(product_ids=(sorted(sim.world.products)[0],)))
    assert runs.last_sync_completed() is None  # a scoped sync does not count
    result = sync(service)
    completed = runs.last_sync_completed()
    assert completed is not None
    assert abs(completed - result.finished_at) < timedelta(seconds=1)
    sim.update_faults(token_revoked=True)
    failed = sync(service, options=SyncOptions(force_refresh=True))
    assert failed.status == SyncStatus.FAILED
    assert runs.last_sync_completed() == completed


def test_nuke_backs_up_first_then_wipes_and_resyncs_inside_the_job(tiny_server, home):
    sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    sync(service, phases=WITH_BUGS)
    result = sync(service, options=SyncOptions(nuke=True))
    assert result.status == SyncStatus.SUCCEEDED
    backup = Path(result.backup_path)
    assert backup.is_file() and backup.stat().st_mode & 0o777 == 0o600
    assert store_ids()["tests"] == truth_ids(sim)["tests"]
    assert counts() == truth_counts(sim)  # the resync brings the bugs back too
    service.restore(backup)
    assert counts() == truth_counts(sim)


def test_a_scoped_nuke_wipes_only_the_given_products_even_with_bugs_stored(tiny_server, home):
    sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    sync(service, phases=WITH_BUGS)
    first, *others = sorted(sim.world.products)
    result = sync(service, scope=SyncScope(product_ids=(first,)), options=SyncOptions(nuke=True))
    assert result.status == SyncStatus.SUCCEEDED, result.errors
    tests = sim.world.tests
    with database.connection_context():
        for pids in ([first], others):
            stored = Bug.select().where(Bug.product_id.in_(pids)).count()
            assert stored == sum(
                1 for b in sim.world.bugs.values() if tests[b.test_id].product_id in pids
            )


def test_a_run_whose_process_died_is_marked_abandoned(tiny_server, home):
    """A running row owned by a dead PID is abandoned at the next sync, which then runs."""
    from testio_sync.sync import runs
    from testio_sync.sync.types import SyncRequest

    _sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    run_id, _ = runs.create_or_attach(SyncRequest(), run_id="dead0001", now=utc_now(), enqueue=None)
    with database.connection_context():
        SyncEvent.update(status="running", owner_pid=2**22 + 7, in_process=True).where(
            SyncEvent.run_id == run_id
        ).execute()
    result = sync(service)
    assert result.run_id != run_id
    assert result.status == SyncStatus.SUCCEEDED
    assert runs.get_run(run_id).status == SyncStatus.ABANDONED.value


def test_the_token_never_reaches_the_logs_or_the_database(fresh_server, home, caplog):
    sim, url = fresh_server
    caplog.set_level("DEBUG")
    service = SyncService(make_settings(home, url))
    sync(service, phases=WITH_BUGS)
    sim.update_faults(token_revoked=True)
    failed = sync(service, options=SyncOptions(force_refresh=True))
    assert TOKEN not in caplog.text
    assert TOKEN not in str(failed.to_dict())
    for path in home.iterdir():
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in stored_text(home)
    assert "password" not in stored_text(home).lower() or all(
        "password" not in (t.raw.get("test_environment") or {}) for t in ExploratoryTest.select()
    )


def test_data_files_are_private(tiny_server, home):
    _sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    sync(service)
    tasks.huey.pending()  # the queue's file is made on first use: use it
    assert home.stat().st_mode & 0o777 == 0o700
    names = ("queue.db",) + (("cache.db", "sync.lock") if testsupport.STORE_URL is None else ())
    for name in names:
        assert (home / name).stat().st_mode & 0o777 == 0o600, name


def test_phases_always_complete_in_declared_order(tiny_server, home):
    _sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    result = sync(service, phases=[SyncPhase.BUGS, SyncPhase.NEW_TESTS, SyncPhase.PRODUCTS])
    assert result.phases_completed == [SyncPhase.PRODUCTS, SyncPhase.NEW_TESTS, SyncPhase.BUGS]


def test_incremental_only_runs_just_new_tests_even_on_an_empty_store(tiny_server, home):
    sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    result = sync(service, options=SyncOptions(incremental_only=True))
    assert result.phases_completed == [SyncPhase.NEW_TESTS]
    assert store_ids()["tests"] == truth_ids(sim)["tests"]
    assert result.features_refreshed == 0


def test_features_are_refetched_only_when_older_than_the_ttl(tiny_server, home):
    sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    sync(service)
    sim.reset_stats()
    sync(service)
    endpoints = sim.stats()["by_endpoint"]
    assert "features" not in endpoints and "section_features" not in endpoints
    stale = SyncService(make_settings(home, url, cache_ttl_s=0))
    sim.reset_stats()
    result = sync(stale)
    assert result.features_refreshed == truth_counts(sim)["features"]


@pytest.mark.parametrize("faulty", [False, True], ids=["clean", "with-faults"])
def test_at_seed_scale_two_days_later_an_incremental_sync_equals_the_truth(home, faulty):
    """Seed truth, then ``advance 48h``: equal again (with faults: all but the broken test)."""
    sim = Simulator(scale="seed", seed=1, token=TOKEN)
    broken = sorted(t for t, v in sim.world.tests.items() if v.status == "archived")[100]
    with sim.serve(host="127.0.0.1", port=0) as server:
        if faulty:
            sim.update_faults(error_rate=0.05, rate_limit_rps=200, broken_test_ids=[broken])
        service = SyncService(make_settings(home, server.base_url, retry_max_wait_s=1.0))
        first = sync(service, phases=WITH_BUGS)
        assert first.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL), first.errors
        missing = {broken} if faulty else set()
        assert store_ids()["tests"] == truth_ids(sim)["tests"] - missing
        sim.advance(hours=48)
        second = sync(service)
        assert second.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL), second.errors
        assert store_ids()["tests"] == truth_ids(sim)["tests"] - missing
        assert store_ids()["products"] == truth_ids(sim)["products"]
        if faulty:
            assert [b.product_id for b in queries.list_broken_tests()] == [
                sim.world.tests[broken].product_id
            ]


def test_the_last_log_line_of_every_run_gives_its_duration(tiny_server, home, caplog):
    """Success or failure, the run ends with ``Sync <outcome> in N.Ns``."""
    _, url = tiny_server
    caplog.set_level("INFO", logger="testio_sync.sync")
    sync(SyncService(make_settings(home, url)))
    sync(SyncService(make_settings(home, url, api_token=None)))  # fails: no token
    finals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Sync ")]
    assert len(finals) == 2
    assert finals[0].startswith("Sync completed in ") and "s (run " in finals[0]
    assert finals[1].startswith("Sync failed in ")


def test_entity_types_limit_what_a_run_refreshes(tiny_server, home):
    """``entity_types=("products",)`` runs the products phase alone: nothing else is stored."""
    sim, url = tiny_server
    service = SyncService(make_settings(home, url))
    result = sync(service, scope=SyncScope(entity_types=("products",)))
    assert result.status == SyncStatus.SUCCEEDED, result.errors
    assert result.phases_completed == [SyncPhase.PRODUCTS]
    assert store_ids()["products"] == truth_ids(sim)["products"]
    assert counts()["features"] == counts()["tests"] == 0

    result = sync(service, phases=WITH_BUGS, scope=SyncScope(entity_types=("tests", "bugs")))
    assert result.phases_completed == [SyncPhase.NEW_TESTS, SyncPhase.BUGS]
    assert store_ids()["tests"] == truth_ids(sim)["tests"]
    assert store_ids()["bugs"] == truth_ids(sim)["bugs"]
    assert counts()["features"] == 0


def test_unknown_entity_types_are_refused_naming_the_valid_ones():
    with pytest.raises(UsageError) as caught:
        SyncScope(entity_types=("tests", "users"))
    assert str(caught.value) == "unknown users; use products, features, tests, bugs"
    assert caught.value.param == "entity_types"
    with pytest.raises(UsageError, match="leaves no phase"):
        SyncRequest(phases=(SyncPhase.BUGS,), scope=SyncScope(entity_types=("features",)))
