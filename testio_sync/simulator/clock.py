"""Moving the simulated clock: what happens to a customer's data as hours pass.

New tests are scheduled per product, running tests collect bugs, features are
now and then added or renamed and an old test is deleted. Statuses then follow
from the new ``now`` (see ``model``). Events draw from their own random stream
in a fixed order, so a seed plus a sequence of advances always gives the same
world. Every product's first new test, the first feature change and the first
deletion fall within 40 hours, so an advance of two days always shows them.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from testio_sync.simulator.factory import EntityFactory
from testio_sync.simulator.model import DAY, HOUR, Bug, ExploratoryTest, Product
from testio_sync.simulator.world import World

MAX_ADVANCE_HOURS = 24 * 366


class Evolution:
    """The event schedule of one world; ``advance`` is its only mutating entry point."""

    def __init__(self, world: World, history_days: int) -> None:
        self.world = world
        self.rng = random.Random(f"testio-sim:{world.seed}:advance")
        self.factory = EntityFactory(world, self.rng)
        now = world.now
        tests_per_product: dict[int, int] = dict.fromkeys(world.products, 0)
        for test in world.tests.values():
            tests_per_product[test.product_id] += 1
        # A product starts a test about as often as its history says, within [12 h, 72 h].
        self.test_interval = {
            pid: min(72 * HOUR, max(12 * HOUR, history_days * DAY // max(1, count)))
            for pid, count in tests_per_product.items()
        }
        self.next_test_at = {pid: now + self.rng.randint(HOUR, 20 * HOUR) for pid in world.products}
        self.next_feature_event_at = now + self.rng.randint(6 * HOUR, 40 * HOUR)
        self.next_deletion_at = now + self.rng.randint(6 * HOUR, 40 * HOUR)

    def advance(self, hours: float) -> dict[str, Any]:
        """Move the clock forward by ``hours`` and report what changed.

        Raises:
            ValueError: ``hours`` is negative or more than a year.
        """
        if not 0 <= hours <= MAX_ADVANCE_HOURS:
            raise ValueError(f"hours must be between 0 and {MAX_ADVANCE_HOURS}")
        world = self.world
        before, after = world.now, world.now + round(hours * HOUR)
        extended = self._extend_running_tests(before, after)
        new_tests = self._start_new_tests(after)
        new_bugs = self._report_bugs(before, after)
        new_features, renamed_features = self._change_features(after)
        deleted_tests, deleted_bugs = self._delete_tests(after)
        world.now = after
        world.invalidate_order()
        test_moves, bug_moves = world.refresh_statuses()
        return {
            "now": datetime.fromtimestamp(after, UTC).isoformat(),
            "previous_now": datetime.fromtimestamp(before, UTC).isoformat(),
            "hours": hours,
            "new_tests": new_tests,
            "extended_tests": extended,
            "new_bugs": new_bugs,
            "new_features": new_features,
            "renamed_features": renamed_features,
            "deleted_tests": deleted_tests,
            "deleted_bugs": deleted_bugs,
            "test_status_changes": dict(sorted(test_moves.items())),
            "bug_status_changes": dict(sorted(bug_moves.items())),
        }

    def _extend_running_tests(self, before: int, after: int) -> list[int]:
        """Now and then a running test is prolonged: its ``end_at`` moves, as in production."""
        chance = min(0.5, (after - before) / (96 * HOUR))
        extended = []
        for test in self.world.tests.values():
            if test.status == "running" and self.rng.random() < chance:
                delta = self.rng.randint(6, 48) * HOUR
                test.end_at += delta
                test.archive_at += delta
                extended.append(test.id)
        return extended

    def _start_new_tests(self, after: int) -> list[int]:
        latest_end: dict[int, int] = dict.fromkeys(self.world.products, 0)
        for test in self.world.tests.values():
            latest_end[test.product_id] = max(latest_end[test.product_id], test.end_at)
        created: list[ExploratoryTest] = []
        for pid, product in self.world.products.items():
            while self.next_test_at[pid] <= after:
                test = self._new_test(product, self.next_test_at[pid], latest_end[pid])
                latest_end[pid] = test.end_at
                created.append(test)
                gap = self.rng.expovariate(1 / self.test_interval[pid])
                self.next_test_at[pid] += max(HOUR, round(gap))
        self.world.add_tests(created)
        return [test.id for test in created]

    def _new_test(self, product: Product, created_at: int, latest_end: int) -> ExploratoryTest:
        """A new test that ends after every other test of its product, so it tops the list."""
        rng = self.rng
        start = created_at + rng.randint(12 * HOUR, 3 * DAY)
        end = max(start + rng.randint(2 * DAY, 10 * DAY), latest_end + rng.randint(1, 6) * HOUR)
        roll = rng.random()
        cancel_at = (
            created_at + rng.randint(HOUR, start - created_at - HOUR) if roll < 0.05 else None
        )
        return self.factory.new_test(
            product,
            created_at=created_at,
            waiting_at=created_at + rng.randint(HOUR, (start - created_at) // 2),
            start_at=start,
            end_at=end,
            cancel_at=cancel_at,
            finalized=0.05 <= roll < 0.1,
        )

    def _report_bugs(self, before: int, after: int) -> int:
        """Tests that ran during the advanced window report bugs at their own rate."""
        rng = self.rng
        bugs: list[Bug] = []
        for test in self.world.tests.values():
            if not test.can_have_bugs():
                continue
            first, last = max(test.start_at, before), min(test.end_at, after)
            if last <= first:
                continue
            expected = test.bug_rate_per_hour * (last - first) / HOUR
            count = int(expected) + (rng.random() < expected - int(expected))
            bugs.extend(self.factory.new_bug(test, rng.randint(first, last)) for _ in range(count))
        self.world.add_bugs(bugs)
        return len(bugs)

    def _change_features(self, after: int) -> tuple[list[int], list[int]]:
        world, rng = self.world, self.rng
        added: list[int] = []
        renamed: list[int] = []
        while self.next_feature_event_at <= after:
            product = world.products[rng.choice(list(world.products))]
            feature_ids = world.features_by_product[product.id]
            if feature_ids and rng.random() < 0.5:
                feature = world.features[rng.choice(feature_ids)]
                feature.revision += 1
                renamed.append(feature.id)
            else:
                section = rng.choice(product.sections or [product.default_section])
                feature = self.factory.new_feature(product, [section.id])
                world.add_feature(feature)
                added.append(feature.id)
            self.next_feature_event_at += max(HOUR, round(rng.expovariate(1 / (36 * HOUR))))
        return added, renamed

    def _delete_tests(self, after: int) -> tuple[list[int], int]:
        """Now and then an archived test disappears upstream, with its bugs."""
        world, rng = self.world, self.rng
        deleted: list[int] = []
        bug_count = 0
        while self.next_deletion_at <= after:
            archived = [tid for tid, t in world.tests.items() if t.status == "archived"]
            if archived:
                victim = rng.choice(archived)
                bug_count += world.remove_test(victim)
                deleted.append(victim)
            self.next_deletion_at += max(HOUR, round(rng.expovariate(1 / (72 * HOUR))))
        return deleted, bug_count
