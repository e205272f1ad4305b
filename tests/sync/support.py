"""Helpers for sync tests: run a request to the end and compare the store with the truth."""

from __future__ import annotations

from typing import Any

from testio_sync.service import SyncService
from testio_sync.simulator import Simulator
from testio_sync.store import queries
from testio_sync.store.models import Bug, ExploratoryTest, Feature, Product, database
from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncResult

WITH_BUGS = (*DEFAULT_PHASES, SyncPhase.BUGS)


def sync(service: SyncService, **kw: Any) -> SyncResult:
    """Run one sync in this process (no worker) and return its result."""
    return service.execute_sync(allow_in_process=True, **kw).wait(120)


def store_ids() -> dict[str, set[int]]:
    with database.connection_context():
        return {
            "products": {p.id for p in Product.select(Product.id)},
            "features": {f.id for f in Feature.select(Feature.id)},
            "tests": {t.id for t in ExploratoryTest.select(ExploratoryTest.id)},
            "bugs": {b.id for b in Bug.select(Bug.id)},
        }


def truth_ids(sim: Simulator) -> dict[str, set[int]]:
    world = sim.world
    return {
        "products": set(world.products),
        "features": set(world.features),
        "tests": set(world.tests),
        "bugs": set(world.bugs),
    }


def counts() -> dict[str, int]:
    return queries.entity_counts()


def truth_counts(sim: Simulator) -> dict[str, int]:
    truth = sim.truth()
    return {k: truth[k] for k in ("products", "features", "tests", "bugs", "users")}
