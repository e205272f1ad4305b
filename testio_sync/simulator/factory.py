"""Builds single products, features, tests and bugs from one random stream.

Both the initial generation and the clock create rows here, so a test born
during ``advance`` looks exactly like one from the seed data. Every random
draw comes from the ``rng`` handed in, in a fixed order, which is what makes a
seed reproduce the same bytes.
"""

from __future__ import annotations

import random

from testio_sync.simulator.model import (
    AUTO_ACCEPT_AFTER,
    DAY,
    HOUR,
    Bug,
    Environment,
    ExploratoryTest,
    Feature,
    FeatureInTest,
    Product,
    Section,
)
from testio_sync.simulator.vocabulary import (
    DEVICES,
    PRODUCT_TYPES,
    REJECT_KEYS,
    REQUIREMENTS,
    SEVERITIES,
    SEVERITY_WEIGHTS,
    TESTING_TYPE_WEIGHTS,
    TESTING_TYPES,
    product_name,
    section_name,
)
from testio_sync.simulator.world import World

MINUTE = 60


def minutes(seconds: int) -> int:
    """Round down to a whole minute: test schedules are set in minutes, not seconds."""
    return seconds - seconds % MINUTE


class EntityFactory:
    """Creates rows for ``world``; ids of tests and bugs are assigned when the world stores them."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng

    def new_product(self, index: int) -> Product:
        """Product number ``index``: every second one is sectioned, every fourth hides its list."""
        ids = self.world.ids
        product_id = ids["product"].next()
        sectioned = index % 2 == 1
        section_count = (3 if index % 4 == 1 else 2) if sectioned else 0
        sections = [
            Section(ids["section"].next(), section_name(index + k), 3 + k, 1 + k % 2)
            for k in range(section_count)
        ]
        environments = [
            Environment(
                id=ids["environment"].next(),
                title=title,
                url=f"https://{title.lower()}.product-{product_id}.example.test",
                username=f"qa-{product_id}-{title.lower()}",
                password=f"pw-{self.rng.getrandbits(32):08x}",
                access_type="basic_auth",
            )
            for title in ("Staging", "Production")
        ]
        return Product(
            id=product_id,
            name=product_name(index),
            description=None if index % 3 == 2 else f"{product_name(index)} of the customer.",
            type=PRODUCT_TYPES[index % len(PRODUCT_TYPES)],
            default_section=Section(ids["section"].next(), "default-section", 0, 0),
            sections=sections,
            lists_sections=index % 4 != 3,
            connection=(
                {"id": 300 + index, "type": "jira", "name": f"JIRA {product_id}"}
                if index % 3 == 0
                else None
            ),
            remote_device_testing=index % 2 == 0,
            environments=environments,
        )

    def new_feature(self, product: Product, section_ids: list[int]) -> Feature:
        feature_id = self.world.ids["feature"].next()
        stories = [
            (self.world.ids["user_story"].next(), f"As a user I can {verb} it")
            for verb in ("open", "use", "share")[: self.rng.randint(0, 3)]
        ]
        return Feature(
            id=feature_id,
            product_id=product.id,
            section_ids=section_ids,
            text_key=self.rng.getrandbits(20),
            revision=0,
            has_description=self.rng.random() < 0.7,
            user_stories=stories,
        )

    def new_test(
        self,
        product: Product,
        *,
        created_at: int,
        waiting_at: int,
        start_at: int,
        end_at: int,
        cancel_at: int | None = None,
        finalized: bool = False,
    ) -> ExploratoryTest:
        """A test planned with these times; its id comes from ``World.add_tests``."""
        rng, world = self.rng, self.world
        section_id = (
            rng.choice(product.sections).id if product.sectioned else product.default_section.id
        )
        test = ExploratoryTest(
            id=0,
            product_id=product.id,
            section_id=section_id,
            text_key=rng.getrandbits(20),
            testing_type=rng.choices(TESTING_TYPES, TESTING_TYPE_WEIGHTS)[0],
            created_at=minutes(created_at),
            waiting_at=minutes(waiting_at),
            start_at=minutes(start_at),
            end_at=minutes(end_at),
            archive_at=minutes(end_at + rng.randint(28 * DAY, 42 * DAY)),
            cancel_at=cancel_at,
            finalized=finalized,
            review_failed=rng.random() < 0.1,
            created_by=rng.choice(world.customers),
            submitted_by=rng.choice(world.customers) if rng.random() < 0.8 else None,
            environment_id=rng.choice(product.environments).id,
            requirement_index=rng.randrange(len(REQUIREMENTS)),
            report_language="de" if rng.random() < 0.2 else "en",
            bug_rate_per_hour=rng.uniform(0.02, 0.12),
        )
        test.features = self._features_for(product, section_id)
        return test

    def _features_for(self, product: Product, section_id: int) -> list[FeatureInTest]:
        pool = self.world.features_by_product[product.id]
        if product.sectioned:
            in_section = [f for f in pool if section_id in self.world.features[f].section_ids]
            pool = in_section or pool
        if not pool:
            return []
        chosen = self.rng.sample(pool, min(len(pool), self.rng.randint(1, 4)))
        return [
            FeatureInTest(
                id=self.world.ids["test_feature"].next(),
                feature_id=feature_id,
                enable_default=True,
                enable_content=self.rng.random() < 0.5 or None,
                enable_visual=self.rng.random() < 0.5 or None,
            )
            for feature_id in chosen
        ]

    def new_bug(self, test: ExploratoryTest, reported_at: int) -> Bug:
        """A bug on ``test``; its outcome (accept, reject, auto-accept) is planned now."""
        rng = self.rng
        test_feature = rng.choice(test.features) if test.features else None
        roll = rng.random()
        if roll < 0.55:
            resolution, resolve_at = "accepted", reported_at + rng.randint(HOUR, 9 * DAY)
        elif roll < 0.75:
            resolution, resolve_at = "rejected", reported_at + rng.randint(HOUR, 9 * DAY)
        else:
            resolution, resolve_at = "auto", reported_at + AUTO_ACCEPT_AFTER
        return Bug(
            id=0,
            test_id=test.id,
            test_feature_id=test_feature.id if test_feature else None,
            feature_id=test_feature.feature_id if test_feature else None,
            text_key=rng.getrandbits(24),
            severity=rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0],
            reported_at=reported_at,
            resolution=resolution,
            resolve_at=resolve_at,
            reject_reason=rng.choice(REJECT_KEYS) if resolution == "rejected" else None,
            author=rng.choice(self.world.testers),
            reviewer=rng.choice(self.world.customers),
            known=rng.random() < 0.03,
            device_index=rng.randrange(len(DEVICES)),
            device_count=1 if rng.random() < 0.8 else 2,
            has_tester_comment=rng.random() < 0.3,
        )
