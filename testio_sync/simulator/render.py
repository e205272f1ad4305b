"""Turns world rows into the contract's JSON payloads, cached as bytes.

Serialising is the simulator's hot path (a 25-test page embeds 25 products,
sections, features and environments), so each entity is serialised once and its
bytes are reused until the world changes; list answers are joined from those
bytes. Text fields are derived from each row's ``text_key`` here rather than
stored, which keeps generation of the large scale fast.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from testio_sync.simulator.model import (
    Bug,
    ExploratoryTest,
    Feature,
    FeatureInTest,
    Product,
    Section,
)
from testio_sync.simulator.vocabulary import (
    BUG_TYPES,
    DEVICES,
    OFFSETS,
    REJECT_COMMENTS,
    REJECT_REASONS,
    REQUIREMENTS,
    bug_steps,
    bug_title,
    exploratory_test_title,
    feature_title,
)
from testio_sync.simulator.world import World


def dump(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def iso(seconds: int, offset_key: int) -> str:
    """The instant rendered with one of several offsets, chosen by ``offset_key``."""
    return datetime.fromtimestamp(seconds, OFFSETS[offset_key % len(OFFSETS)]).isoformat()


def section_payload(section: Section) -> dict[str, Any]:
    return {
        "id": section.id,
        "name": section.name,
        "connection": None,
        "test_templates": {"total": section.template_total, "count": section.template_count},
    }


def product_payload(product: Product) -> dict[str, Any]:
    sections = [section_payload(s) for s in product.sections]
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "type": product.type,
        "default_section_id": product.default_section.id,
        "sections": sections if product.lists_sections else [],
        "sections_with_default": [section_payload(product.default_section), *sections],
        "connection": product.connection,
        "remote_device_testing": product.remote_device_testing,
    }


def feature_payload(feature: Feature, index: int) -> dict[str, Any]:
    title = feature_title(feature.text_key, feature.revision)
    return {
        "id": feature.id,
        "title": title,
        "description": f"What {title} lets users do." if feature.has_description else None,
        "howtofind": f"Main menu > {title}" if feature.text_key % 3 else None,
        "user_stories": [story for _, story in feature.user_stories],
        "location": None,
        "target_idx": index,
        "use_markdown": False,
    }


def user_story_payloads(feature: Feature) -> list[dict[str, Any]]:
    title = feature_title(feature.text_key, feature.revision)
    return [
        {"id": story_id, "title": story, "path": f"{title} > {story}", "feature_id": feature.id}
        for story_id, story in feature.user_stories
    ]


def reject_reason_payloads() -> list[dict[str, str]]:
    return [{"key": k, "name": n, "default_comment": c} for k, n, c in REJECT_REASONS]


class Renderer:
    """Serialises rows of one world; ``clear`` after the world changed."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._products: dict[int, dict[str, Any]] = {}
        self._tests: dict[int, bytes] = {}
        self._bugs: dict[int, bytes] = {}

    def clear(self) -> None:
        self._products.clear()
        self._tests.clear()
        self._bugs.clear()

    def product(self, product_id: int) -> dict[str, Any]:
        cached = self._products.get(product_id)
        if cached is None:
            cached = self._products[product_id] = product_payload(self.world.products[product_id])
        return cached

    def test_bytes(self, test_id: int) -> bytes:
        cached = self._tests.get(test_id)
        if cached is None:
            cached = self._tests[test_id] = dump(self._test_payload(self.world.tests[test_id]))
        return cached

    def bug_bytes(self, bug_id: int) -> bytes:
        cached = self._bugs.get(bug_id)
        if cached is None:
            cached = self._bugs[bug_id] = dump(self._bug_payload(self.world.bugs[bug_id]))
        return cached

    def _test_payload(self, test: ExploratoryTest) -> dict[str, Any]:
        world = self.world
        product = world.products[test.product_id]
        section = product.section(test.section_id) or product.default_section
        env = next(e for e in product.environments if e.id == test.environment_id)
        title = exploratory_test_title(test.text_key)
        area = title.split(" #")[0]
        return {
            "id": test.id,
            "title": title,
            "test_title": title,
            "status": test.status,
            "review_status": test.review_status(),
            "testing_type": test.testing_type,
            "goal": f"**Goal:** find issues in *{area}*.",
            "goal_text": f"Goal: find issues in {area}.",
            "instructions": "1. Follow the main flows.\n2. Report **every** issue.",
            "instructions_text": "1. Follow the main flows.\n2. Report every issue.",
            "out_of_scope": "*Payments with real money.*",
            "out_of_scope_text": "Payments with real money.",
            "start_at": iso(test.start_at, test.id),
            "end_at": iso(test.end_at, test.id // 3 + 1),
            "duration": (test.end_at - test.start_at) // 60 if test.testing_type else None,
            "enable_low": True,
            "enable_high": True,
            "enable_critical": test.testing_type != "usability",
            "created_by": test.created_by,
            "submitted_by": test.submitted_by,
            "test_environment": {
                "id": env.id,
                "title": env.title,
                "url": env.url,
                "username": env.username,
                "password": env.password,
                "access": f"{env.username} / {env.password}",
                "proxy": None,
                "allow_orders": False,
                "access_type": env.access_type,
                "environment_test_information": "Use the test credit card 4111 1111 1111 1111.",
                "binary_app": None,
            },
            "product": self.product(product.id),
            "section": section_payload(section),
            "features": [self._test_feature(link) for link in test.features],
            "requirements": [REQUIREMENTS[test.requirement_index]],
            "attachments": [],
            "report_language": test.report_language,
            "allowed_bug_types": list(BUG_TYPES[: 1 + test.text_key % 3]),
            "reviews": [],
            "demo": False,
            "allow_device_clouds_test_scenario": test.text_key % 4 == 0,
        }

    def _test_feature(self, link: FeatureInTest) -> dict[str, Any]:
        feature = self.world.features[link.feature_id]
        return {
            "id": link.id,
            "feature_id": link.feature_id,
            "title": feature_title(feature.text_key, feature.revision),
            "description": None,
            "location": None,
            "howtofind": None,
            "target_idx": None,
            "enable_default": link.enable_default,
            "enable_content": link.enable_content,
            "enable_visual": link.enable_visual,
            "custom_report_configurations": [],
            "user_stories": [story for _, story in feature.user_stories],
        }

    def _bug_payload(self, bug: Bug) -> dict[str, Any]:
        world = self.world
        test = world.tests[bug.test_id]
        product = world.products[test.product_id]
        feature = world.features[bug.feature_id] if bug.feature_id else None
        feature_ref = (
            {"id": feature.id, "title": feature_title(feature.text_key, feature.revision)}
            if feature
            else None
        )
        comments = []
        if bug.has_tester_comment:
            comments.append(
                {
                    "id": 20_000_000 + bug.id * 2,
                    "body": "Reproduced it a second time on the same device.",
                    "author": {"name": bug.author},
                }
            )
        if bug.status == "rejected" and bug.reject_reason:
            comments.append(
                {
                    "id": 20_000_000 + bug.id * 2 + 1,
                    "body": REJECT_COMMENTS[bug.reject_reason],
                    "author": {"name": bug.reviewer},
                }
            )
        payload: dict[str, Any] = {
            "id": bug.id,
            "title": bug_title(bug.text_key),
            "severity": bug.severity,
            "status": bug.status,
            "auto_accepted": bug.auto_accepted,
            "known": bug.known,
            "language": test.report_language,
            "location": f"https://product-{product.id}.example.test/{bug.text_key % 50}",
            "steps": bug_steps(bug.text_key),
            "actual_result": "" if bug.text_key % 5 == 0 else "Nothing happens.",
            "expected_result": "The action completes.",
            "reported_at": iso(bug.reported_at, bug.id),
            "exported_at": None,
            "author": {"name": bug.author},
            "test": {"id": test.id, "title": exploratory_test_title(test.text_key)},
            "product": {"id": product.id, "name": product.name},
            "feature": feature_ref,
            "test_feature": (
                {"id": bug.test_feature_id, "feature": feature_ref} if bug.test_feature_id else None
            ),
            "devices": [
                DEVICES[(bug.device_index + k) % len(DEVICES)] for k in range(bug.device_count)
            ],
            "comments": comments,
            "attachments": [
                {
                    "id": 30_000_000 + bug.id,
                    "url": f"https://assets.example.test/bugs/{bug.id}/screenshot.png",
                    "filename": "screenshot.png",
                }
            ],
        }
        if bug.severity == "custom":
            payload["report"] = {
                "content": {
                    "data": [
                        {"key": "Question", "value": "Was the checkout easy to find?"},
                        {"key": "Answer", "value": "It took three attempts."},
                    ]
                },
                "custom_report_configuration_id": 600 + bug.text_key % 5,
            }
        return payload
