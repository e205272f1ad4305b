"""The mutable world: every product, feature, test and bug, with the indexes the API needs.

One ``World`` holds the whole simulated customer. Generation and the clock
write to it; the endpoints only read. It is not thread-safe by itself: the
``Simulator`` serialises access with one lock.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from testio_sync.simulator.model import Bug, ExploratoryTest, Feature, Product
from testio_sync.simulator.vocabulary import BUG_STATUS_BUCKETS, SEVERITIES, TEST_STATUSES


class IdCounter:
    """Increasing ids with random gaps: real ids are global across customers, never contiguous."""

    def __init__(self, seed: int, kind: str, start: int, max_gap: int) -> None:
        self._rng = random.Random(f"testio-sim:{seed}:ids:{kind}")
        self._last = start
        self._max_gap = max_gap

    def next(self) -> int:
        self._last += self._rng.randint(1, self._max_gap)
        return self._last


class World:
    """All simulated data at the simulated ``now`` (epoch seconds, UTC)."""

    def __init__(self, seed: int, now: int, testers: list[str], customers: list[str]) -> None:
        self.seed = seed
        self.now = now
        self.testers = testers
        self.customers = customers
        self.products: dict[int, Product] = {}
        self.features: dict[int, Feature] = {}
        self.tests: dict[int, ExploratoryTest] = {}
        self.bugs: dict[int, Bug] = {}
        self.features_by_product: dict[int, list[int]] = {}
        self.bugs_by_test: dict[int, list[int]] = {}
        self.ids = {
            "product": IdCounter(seed, "product", 100, 40),
            "section": IdCounter(seed, "section", 2_000, 25),
            "environment": IdCounter(seed, "environment", 500, 30),
            "feature": IdCounter(seed, "feature", 10_000, 9),
            "user_story": IdCounter(seed, "user_story", 50_000, 5),
            "test": IdCounter(seed, "test", 30_000, 40),
            "test_feature": IdCounter(seed, "test_feature", 400_000, 6),
            "bug": IdCounter(seed, "bug", 1_000_000, 12),
        }
        self._order: dict[int, list[int]] | None = None

    @property
    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def add_product(self, product: Product) -> None:
        self.products[product.id] = product
        self.features_by_product.setdefault(product.id, [])

    def add_feature(self, feature: Feature) -> None:
        self.features[feature.id] = feature
        self.features_by_product[feature.product_id].append(feature.id)

    def add_tests(self, tests: list[ExploratoryTest]) -> None:
        """Give each test the next id, in list order, and store it."""
        for test in tests:
            test.id = self.ids["test"].next()
            self.tests[test.id] = test
            self.bugs_by_test[test.id] = []
        self.invalidate_order()

    def add_bugs(self, bugs: list[Bug]) -> None:
        """Store bugs with ids that grow with ``reported_at``, as a live tracker assigns them."""
        bugs.sort(key=lambda bug: bug.reported_at)
        for bug in bugs:
            bug.id = self.ids["bug"].next()
            self.bugs[bug.id] = bug
            self.bugs_by_test[bug.test_id].append(bug.id)

    def remove_test(self, test_id: int) -> int:
        """Delete a test and its bugs everywhere; returns the number of bugs removed."""
        del self.tests[test_id]
        bug_ids = self.bugs_by_test.pop(test_id)
        for bug_id in bug_ids:
            del self.bugs[bug_id]
        self.invalidate_order()
        return len(bug_ids)

    def invalidate_order(self) -> None:
        self._order = None

    def ordered_test_ids(self, product_id: int) -> list[int]:
        """The product's tests in API order: ``end_at`` descending (ties by id, descending)."""
        if self._order is None:
            order: dict[int, list[ExploratoryTest]] = {pid: [] for pid in self.products}
            for test in self.tests.values():
                order[test.product_id].append(test)
            self._order = {
                pid: [t.id for t in sorted(tests, key=lambda t: (-t.end_at, -t.id))]
                for pid, tests in order.items()
            }
        return self._order.get(product_id, [])

    def refresh_statuses(self) -> tuple[Counter[str], Counter[str]]:
        """Apply the clock to every status; returns the ``old->new`` transition counts."""
        test_moves: Counter[str] = Counter()
        for test in self.tests.values():
            status = test.status_at(self.now)
            if status != test.status:
                test_moves[f"{test.status}->{status}"] += 1
                test.status = status
        bug_moves: Counter[str] = Counter()
        for bug in self.bugs.values():
            status, auto = bug.status_at(self.now)
            if status != bug.status or auto != bug.auto_accepted:
                before = bug.bucket
                bug.status, bug.auto_accepted = status, auto
                bug_moves[f"{before}->{bug.bucket}"] += 1
        return test_moves, bug_moves

    def truth(self) -> dict[str, Any]:
        """The counts a correct full sync must end up with, computed from the rows themselves."""
        testers = {bug.author for bug in self.bugs.values()}
        customers = {t.created_by for t in self.tests.values()}
        customers.update(t.submitted_by for t in self.tests.values() if t.submitted_by)
        by_status = dict.fromkeys(BUG_STATUS_BUCKETS, 0)
        by_severity = dict.fromkeys(SEVERITIES, 0)
        for bug in self.bugs.values():
            by_status[bug.bucket] += 1
            by_severity[bug.severity] += 1
        tests_by_status = dict.fromkeys(TEST_STATUSES, 0)
        per_product = {
            str(pid): {"tests": 0, "bugs": 0, "features": len(self.features_by_product[pid])}
            for pid in self.products
        }
        for test in self.tests.values():
            tests_by_status[test.status] += 1
            row = per_product[str(test.product_id)]
            row["tests"] += 1
            row["bugs"] += len(self.bugs_by_test[test.id])
        return {
            "products": len(self.products),
            "tests": len(self.tests),
            "bugs": len(self.bugs),
            "features": len(self.features),
            "users": len(testers) + len(customers),
            "testers": len(testers),
            "customer_users": len(customers),
            "bugs_by_status": by_status,
            "bugs_by_severity": by_severity,
            "tests_by_status": tests_by_status,
            "per_product": per_product,
            "now": self.now_datetime.isoformat(),
        }
