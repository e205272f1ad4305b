"""Read-ahead in real syncs: what each kind of walk asks of the API, counted by the simulator.

A walk to the end asks for the newest 150 tests in one request, then for the
pages past them. What it needs comes from the simulator's own test counts,
never from what the sync wrote.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testsupport import TOKEN, make_settings

from testio_sync.api.pages import READ_AHEAD_GROWTH, READ_AHEAD_START, UNPAGED_LIMIT
from testio_sync.service import SyncService
from testio_sync.simulator import Simulator
from testio_sync.store import queries
from testio_sync.store.models import database
from testio_sync.sync.types import SyncOptions, SyncScope, SyncStatus

from .support import store_ids, sync, truth_ids

PER_PAGE = 25


@pytest.fixture
def paged_server() -> Iterator[tuple[Simulator, str]]:
    """One product past the newest 150 tests, two below, and a little latency."""
    sim = Simulator(scale="tiny", seed=3, token=TOKEN, tests=400, bugs=400, latency_ms=5)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


def listed_tests(sim: Simulator) -> dict[str, int]:
    return {pid: row["tests"] for pid, row in sim.truth()["per_product"].items()}


def pages_past_the_newest(tests: int) -> int:
    """Pages after the newest 150 tests down to the short (or empty) last one."""
    return 0 if tests < UNPAGED_LIMIT else (tests - UNPAGED_LIMIT) // PER_PAGE + 1


def requests_to_the_end(sim: Simulator) -> int:
    return sum(1 + pages_past_the_newest(tests) for tests in listed_tests(sim).values())


def test_a_first_sync_asks_for_the_newest_tests_then_guesses_at_most_its_window(paged_server, home):
    sim, url = paged_server
    service = SyncService(make_settings(home, url))
    counts = listed_tests(sim)
    assert max(counts.values()) >= UNPAGED_LIMIT + 2 * PER_PAGE  # pages past the newest
    assert min(counts.values()) < UNPAGED_LIMIT  # and a product done in one request

    result = sync(service)

    assert result.status is SyncStatus.SUCCEEDED
    assert store_ids()["tests"] == truth_ids(sim)["tests"]
    asked = sim.stats()["by_endpoint"]["exploratory_tests"]
    # Only a walk past the newest tests guesses, at most its window past its last full page.
    window = sum(
        READ_AHEAD_START + (pages_past_the_newest(tests) - 1) // READ_AHEAD_GROWTH
        for tests in counts.values()
        if tests >= UNPAGED_LIMIT
    )
    needed = requests_to_the_end(sim)
    assert needed <= asked <= needed + window


def test_a_forced_sync_asks_every_page_once_and_none_past_the_end(paged_server, home):
    """The stored history says how long each list is: nothing is guessed, nothing wasted."""
    sim, url = paged_server
    service = SyncService(make_settings(home, url))
    sync(service)
    sim.reset_stats()

    result = sync(service, options=SyncOptions(force_refresh=True))

    assert result.status is SyncStatus.SUCCEEDED
    assert sim.stats()["by_endpoint"]["exploratory_tests"] == requests_to_the_end(sim)
    assert store_ids()["tests"] == truth_ids(sim)["tests"]


def test_an_incremental_sync_with_nothing_new_does_not_read_ahead(paged_server, home):
    """Two pages a product (the first, and the tail probe) plus the product list."""
    sim, url = paged_server
    service = SyncService(make_settings(home, url))
    sync(service)
    sim.reset_stats()

    result = sync(service)

    assert result.status is SyncStatus.SUCCEEDED
    stats = sim.stats()
    products = len(sim.truth()["per_product"])
    assert stats["by_endpoint"] == {"products": 1, "exploratory_tests": 2 * products}


def test_a_broken_test_among_the_newest_leaves_the_walk_to_the_pages(paged_server, home):
    """The one request fails (500, asked twice); the pages shrink around the broken test."""
    sim, url = paged_server
    world = sim.world
    pid = min(listed_tests(sim), key=lambda p: listed_tests(sim)[p])  # done in one request
    broken = world.ordered_test_ids(int(pid))[30]
    sim.update_faults(broken_test_ids=[broken])
    service = SyncService(make_settings(home, url))

    result = sync(service, scope=SyncScope(product_ids=(int(pid),)))

    assert result.status is SyncStatus.PARTIAL  # the broken test is an error of the run
    listed = {t for t in truth_ids(sim)["tests"] if world.tests[t].product_id == int(pid)}
    assert store_ids()["tests"] == listed - {broken}
    with database.connection_context():
        assert [b.position for b in queries.list_broken_tests()] == [30]
    # 2 for the newest (a 500 is asked once more), then pages 1 to the short last one,
    # and the failed page 2 again in pages of 10, 5, 2 and 1 around the broken test.
    pages = listed_tests(sim)[pid] // PER_PAGE + 1
    assert sim.stats()["by_endpoint"]["exploratory_tests"] >= 2 + pages
