"""Read-ahead in real syncs: what each kind of walk asks of the API, counted by the simulator.

The pages a walk to the end needs come from the simulator's own test counts
(``tests // 25 + 1`` a product), never from what the sync wrote.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testsupport import TOKEN, make_settings

from testio_sync.api.pages import READ_AHEAD_GROWTH, READ_AHEAD_START
from testio_sync.service import SyncService
from testio_sync.simulator import Simulator
from testio_sync.sync.types import SyncOptions, SyncStatus

from .support import store_ids, sync, truth_ids

PER_PAGE = 25


@pytest.fixture
def paged_server() -> Iterator[tuple[Simulator, str]]:
    """Several pages per product and a little latency, so pages really overlap."""
    sim = Simulator(scale="tiny", seed=3, token=TOKEN, tests=400, bugs=400, latency_ms=5)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


def pages_to_the_end(sim: Simulator) -> dict[str, int]:
    return {pid: row["tests"] // PER_PAGE + 1 for pid, row in sim.truth()["per_product"].items()}


def test_a_first_sync_reads_ahead_and_guesses_past_the_end_at_most_its_window(paged_server, home):
    sim, url = paged_server
    service = SyncService(make_settings(home, url))
    needed = pages_to_the_end(sim)
    assert max(needed.values()) >= 5  # a walk deep enough to read ahead

    result = sync(service)

    assert result.status is SyncStatus.SUCCEEDED
    assert store_ids()["tests"] == truth_ids(sim)["tests"]
    asked = sim.stats()["by_endpoint"]["exploratory_tests"]
    # A walk guesses at most its window past the end: what it allows after its last full page.
    window = sum(READ_AHEAD_START + (pages - 1) // READ_AHEAD_GROWTH for pages in needed.values())
    assert sum(needed.values()) <= asked <= sum(needed.values()) + window


def test_a_forced_sync_asks_every_page_once_and_none_past_the_end(paged_server, home):
    """The stored history says how long each list is: nothing is guessed, nothing wasted."""
    sim, url = paged_server
    service = SyncService(make_settings(home, url))
    sync(service)
    sim.reset_stats()

    result = sync(service, options=SyncOptions(force_refresh=True))

    assert result.status is SyncStatus.SUCCEEDED
    assert sim.stats()["by_endpoint"]["exploratory_tests"] == sum(pages_to_the_end(sim).values())
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
