"""Seeded, deterministic generation of a whole customer at a given scale.

The ``seed`` scale reproduces the numbers of a typical customer (6 products,
724 tests, 8,056 bugs, 298 features, 45 users) exactly, so a sync against it
can be checked against known totals. Tests are spread over products with a
Zipf-like skew (one product holds most of the history, as in real accounts),
and every status and enum value of the contract is made to occur.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from testio_sync.simulator.factory import EntityFactory
from testio_sync.simulator.model import (
    AUTO_ACCEPT_AFTER,
    DAY,
    HOUR,
    Bug,
    ExploratoryTest,
    Product,
)
from testio_sync.simulator.vocabulary import (
    REJECT_KEYS,
    SEVERITIES,
    TESTING_TYPES,
    names_for_customers,
    names_for_testers,
)
from testio_sync.simulator.world import World


@dataclass(frozen=True, slots=True)
class ScaleSpec:
    """How much data to generate."""

    products: int
    tests: int
    bugs: int
    features: int
    testers: int
    customer_users: int
    history_days: int


SCALES: dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(3, 40, 240, 18, 8, 3, 180),
    "seed": ScaleSpec(6, 724, 8_056, 298, 37, 8, 730),
    "large": ScaleSpec(60, 7_240, 80_560, 2_980, 370, 80, 1_095),
}

# Lifecycle roles of generated tests and how often they occur.
_ROLES = (
    "archived",
    "locked",
    "customer_finalized",
    "cancelled",
    "running",
    "waiting",
    "initialized",
)
_ROLE_WEIGHTS = (82, 5, 4, 3, 3, 1.5, 1.5)


def resolve_scale(
    scale: str,
    *,
    products: int | None = None,
    tests: int | None = None,
    bugs: int | None = None,
    features: int | None = None,
) -> ScaleSpec:
    """The named scale with explicit counts applied on top.

    Raises:
        ValueError: unknown scale name, a negative count, or bugs without any test.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; pick one of {', '.join(SCALES)}")
    overrides = {
        name: value
        for name, value in (
            ("products", products),
            ("tests", tests),
            ("bugs", bugs),
            ("features", features),
        )
        if value is not None
    }
    spec = replace(SCALES[scale], **overrides)
    if min(spec.products, spec.tests, spec.bugs, spec.features) < 0:
        raise ValueError("counts must not be negative")
    if spec.products < 1:
        raise ValueError("at least one product is needed")
    if spec.bugs and not spec.tests:
        raise ValueError("bugs need at least one test")
    return spec


def generate_world(spec: ScaleSpec, seed: int, now: int) -> World:
    """Build the world for ``spec``; the same arguments always give the same world."""
    rng = random.Random(f"testio-sim:{seed}:data")
    world = World(
        seed, now, names_for_testers(spec.testers), names_for_customers(spec.customer_users)
    )
    factory = EntityFactory(world, rng)
    for index in range(spec.products):
        world.add_product(factory.new_product(index))
    _generate_features(factory, spec.features)
    tests = _generate_tests(factory, spec)
    bugs = _generate_bugs(factory, tests, spec.bugs)
    world.add_bugs(bugs)
    world.refresh_statuses()
    return world


def split(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` exactly (largest remainder)."""
    weight_sum = sum(weights)
    if total == 0 or weight_sum <= 0:
        return [0] * len(weights)
    shares = [total * w / weight_sum for w in weights]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - shares[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _generate_features(factory: EntityFactory, total: int) -> None:
    products = list(factory.world.products.values())
    counts = split(total, [1 / (i + 1) ** 0.5 for i in range(len(products))])
    for product, count in zip(products, counts, strict=True):
        for j in range(count):
            if not product.sectioned:
                section_ids = [product.default_section.id]
            else:
                sections = product.sections
                section_ids = [sections[j % len(sections)].id]
                # Some features are shared by two sections: a client must dedupe them by id.
                if j % 7 == 0 and len(sections) > 1:
                    section_ids.append(sections[(j + 1) % len(sections)].id)
            factory.world.add_feature(factory.new_feature(product, section_ids))


def _generate_tests(factory: EntityFactory, spec: ScaleSpec) -> list[ExploratoryTest]:
    world, rng = factory.world, factory.rng
    products = list(world.products.values())
    counts = split(spec.tests, [1 / (i + 1) for i in range(len(products))])
    tests: list[ExploratoryTest] = []
    for index, (product, count) in enumerate(zip(products, counts, strict=True)):
        # The largest product shows every lifecycle state; the others at least the busy ones.
        forced = list(_ROLES) if index == 0 else ["running", "locked"] if count >= 4 else []
        roles = forced[:count] + rng.choices(_ROLES, _ROLE_WEIGHTS, k=max(0, count - len(forced)))
        for role in roles:
            tests.append(_test_in_role(factory, product, role, spec.history_days))
    # Ids say nothing about age or product: hand them out in a shuffled order.
    rng.shuffle(tests)
    for test, testing_type in zip(tests, TESTING_TYPES, strict=False):
        test.testing_type = testing_type
    for test, customer in zip(tests, world.customers, strict=False):
        test.created_by = customer
    archived = [t for t in tests if t.status_at(world.now) == "archived"]
    for test, failed in zip(archived, (True, False), strict=False):
        test.review_failed = failed
    world.add_tests(tests)
    return tests


def _test_in_role(
    factory: EntityFactory, product: Product, role: str, history_days: int
) -> ExploratoryTest:
    """A test whose planned times put it in ``role`` at the world's ``now``."""
    rng, now = factory.rng, factory.world.now
    history = max(history_days, 60) * DAY
    duration = rng.randint(2 * DAY, 10 * DAY)
    cancel_at = None
    if role in ("archived", "customer_finalized"):
        # Archived tests ended long enough ago for the 4-6 week archiving delay to have passed.
        earliest_gap = 43 * DAY if role == "archived" else DAY
        end = now - rng.randint(earliest_gap, history)
        start = end - duration
        created = start - rng.randint(DAY, 14 * DAY)
        waiting = created + rng.randint(HOUR, (start - created) // 2)
    elif role == "locked":
        end = now - rng.randint(HOUR, 27 * DAY)
        start = end - duration
        created = start - rng.randint(DAY, 14 * DAY)
        waiting = created + rng.randint(HOUR, (start - created) // 2)
    elif role == "cancelled":
        created = now - rng.randint(2 * DAY, history)
        start = created + rng.randint(DAY, 14 * DAY)
        end = start + duration
        waiting = created + rng.randint(1, (start - created) // 2)
        cancel_at = created + rng.randint(HOUR // 2, min(start, now) - created - HOUR // 2)
    elif role == "running":
        start = now - rng.randint(HOUR, 5 * DAY)
        end = now + rng.randint(2 * HOUR, 7 * DAY)
        created = start - rng.randint(DAY, 7 * DAY)
        waiting = created + rng.randint(HOUR, (start - created) // 2)
    elif role == "waiting":
        created = now - rng.randint(DAY, 4 * DAY)
        waiting = created + rng.randint(HOUR, 12 * HOUR)
        start = now + rng.randint(2 * HOUR, 3 * DAY)
        end = start + duration
    else:  # initialized
        created = now - rng.randint(0, 6 * HOUR)
        waiting = now + rng.randint(HOUR, 12 * HOUR)
        start = waiting + rng.randint(12 * HOUR, 3 * DAY)
        end = start + duration
    return factory.new_test(
        product,
        created_at=created,
        waiting_at=waiting,
        start_at=start,
        end_at=end,
        cancel_at=cancel_at,
        finalized=role == "customer_finalized",
    )


def _generate_bugs(factory: EntityFactory, tests: list[ExploratoryTest], total: int) -> list[Bug]:
    rng, world = factory.rng, factory.world
    now = world.now
    eligible = [t for t in tests if t.can_have_bugs() and t.start_at < now]
    weights = [
        rng.uniform(0.3, 1.7) * (min(t.end_at, now) - t.start_at) / (t.end_at - t.start_at)
        for t in eligible
    ]
    bugs: list[Bug] = []
    for test, count in zip(eligible, split(total, weights), strict=True):
        last = min(test.end_at, now)
        bugs.extend(factory.new_bug(test, rng.randint(test.start_at, last)) for _ in range(count))
    _cover_enums(bugs, world, now)
    return bugs


def _cover_enums(bugs: list[Bug], world: World, now: int) -> None:
    """Make every severity, status bucket, reject reason and tester occur when counts allow."""
    for bug, severity in zip(bugs, SEVERITIES, strict=False):
        bug.severity = severity
    for bug, tester in zip(bugs, world.testers, strict=False):
        bug.author = tester
    old = [b for b in bugs if b.reported_at <= now - AUTO_ACCEPT_AFTER]
    outcomes = ["accepted", "auto"] + ["rejected"] * len(REJECT_KEYS)
    for bug, outcome in zip(old, outcomes, strict=False):
        bug.resolution = outcome
        bug.resolve_at = bug.reported_at + (AUTO_ACCEPT_AFTER if outcome == "auto" else HOUR)
        bug.reject_reason = None
    for bug, reason in zip(
        [b for b in old if b.resolution == "rejected"], REJECT_KEYS, strict=False
    ):
        bug.reject_reason = reason
    if bugs and not any(b.resolve_at > now for b in bugs):
        newest = max(bugs, key=lambda b: b.reported_at)
        if newest.reported_at > now - AUTO_ACCEPT_AFTER:
            newest.resolution, newest.resolve_at = "auto", newest.reported_at + AUTO_ACCEPT_AFTER
            newest.reject_reason = None
