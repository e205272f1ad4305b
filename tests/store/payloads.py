"""Small, realistic API payloads (envelopes already unwrapped) for store tests.

Shapes follow the API contract (shared/testio-api.md): sectioned and plain products, tests that
still carry test-environment credentials, bugs of every status, and timestamps
with mixed offsets so that text order and time order disagree.
"""

from __future__ import annotations

from typing import Any

PASSWORD = "hunter2-Str0ng-Pa55"
ENV_USERNAME = "qa-login@example.com"

REJECT_REASONS = {
    "We could not reproduce this issue with the provided steps.": "not_reproducible",
    "This is the intended behavior of the product.": "intended_behavior",
    "This bug is already known to us.": "known_bug",
}


def section(sid: int, name: str = "Checkout") -> dict[str, Any]:
    return {
        "id": sid,
        "name": name,
        "connection": None,
        "test_templates": {"total": 2, "count": 1},
    }


def product(pid: int, *, name: str = "Web shop", sectioned: bool = False) -> dict[str, Any]:
    """A product; ``sectioned`` gives it two real sections besides the default one."""
    default = {**section(pid * 10, "default-section")}
    sections = [section(pid * 10 + 1, "Checkout"), section(pid * 10 + 2, "Search")]
    return {
        "id": pid,
        "name": name,
        "description": None,
        "type": "website",
        "default_section_id": pid * 10,
        "sections": sections if sectioned else [],
        "sections_with_default": [default, *sections] if sectioned else [default],
        "connection": None,
        "remote_device_testing": False,
    }


def feature(fid: int, *, title: str = "Login", section_ids: list[int] | None = None) -> dict:
    """A feature; ``section_ids`` is the key the sync engine adds after deduplication."""
    item: dict[str, Any] = {
        "id": fid,
        "title": title,
        "description": "Sign in with e-mail and password.",
        "howtofind": "Top right corner",
        "user_stories": ["As a shopper I can sign in", "As a shopper I can reset my password"],
        "location": None,
    }
    if section_ids is not None:
        item["section_ids"] = section_ids
    return item


def test_feature_item(tfid: int, feature_id: int, title: str = "Login") -> dict[str, Any]:
    return {
        "id": tfid,
        "feature_id": feature_id,
        "title": title,
        "description": None,
        "howtofind": None,
        "enable_default": True,
        "enable_content": None,
        "enable_visual": False,
        "custom_report_configurations": [],
        "user_stories": ["As a shopper I can sign in"],
    }


def exploratory_test(
    tid: int,
    *,
    product_id: int = 1,
    status: str = "running",
    end_at: str = "2026-03-01T18:00:00+02:00",
    start_at: str = "2026-02-27T09:00:00+01:00",
    testing_type: str | None = "coverage",
    created_by: str | None = "Carla Customer",
    submitted_by: str | None = None,
    features: list[dict[str, Any]] | None = None,
    title: str = "Checkout regression",
) -> dict[str, Any]:
    """A test as the API sends it, credentials in ``test_environment`` included."""
    return {
        "id": tid,
        "title": title,
        "test_title": title,
        "status": status,
        "review_status": "not_finalized",
        "testing_type": testing_type,
        "goal": "Find **checkout** bugs",
        "goal_text": "Find checkout bugs",
        "start_at": start_at,
        "end_at": end_at,
        "duration": 48 * 60,
        "enable_low": True,
        "enable_high": True,
        "enable_critical": True,
        "created_by": created_by,
        "submitted_by": submitted_by,
        "test_environment": {
            "id": 77,
            "title": "Staging",
            "url": "https://staging.example.com",
            "username": ENV_USERNAME,
            "password": PASSWORD,
            "access": f"user {ENV_USERNAME} / {PASSWORD}",
            "proxy": None,
            "allow_orders": False,
            "access_type": "credentials",
        },
        "product": {"id": product_id, "name": "Web shop"},
        "section": {"id": product_id * 10 + 1, "name": "Checkout"},
        "features": features if features is not None else [test_feature_item(tid * 10, 501)],
        "requirements": [],
        "report_language": "en",
    }


def bug(
    bid: int,
    *,
    test_id: int,
    status: str = "forwarded",
    severity: str = "high",
    author: str | None = "Tina Tester",
    auto_accepted: bool = False,
    comments: list[str] | None = None,
    reported_at: str = "2026-02-28T10:15:00+01:00",
    feature_id: int | None = 501,
    title: str = "Pay button does nothing",
) -> dict[str, Any]:
    """A bug; ``comments`` are comment bodies (a rejection posts its default comment)."""
    return {
        "id": bid,
        "title": title,
        "severity": severity,
        "status": status,
        "auto_accepted": auto_accepted,
        "known": False,
        "steps": ["Open the cart", "Press Pay"],
        "actual_result": "Nothing happens",
        "expected_result": "The payment form opens",
        "reported_at": reported_at,
        "author": {"name": author} if author is not None else None,
        "test": {"id": test_id, "title": "Checkout regression"},
        "test_feature": (
            {"id": test_id * 10, "feature": {"id": feature_id, "title": "Login"}}
            if feature_id is not None
            else None
        ),
        "devices": [
            {"id": 1, "category": {"name": "Computers"}, "browsers": [{"name": "Firefox"}]}
        ],
        "comments": [
            {"id": bid * 100 + i, "body": body, "author": {"name": "Carla Customer"}}
            for i, body in enumerate(comments or [])
        ],
        "attachments": [],
        "language": "en",
    }


def bugs_of_every_status(test_id: int, first_id: int) -> list[dict[str, Any]]:
    """Open, actively accepted, auto accepted and rejected (with a default comment)."""
    not_reproducible = next(iter(REJECT_REASONS))
    return [
        bug(first_id, test_id=test_id, status="forwarded", severity="low"),
        bug(first_id + 1, test_id=test_id, status="accepted", severity="critical"),
        bug(first_id + 2, test_id=test_id, status="accepted", auto_accepted=True),
        bug(
            first_id + 3,
            test_id=test_id,
            status="rejected",
            author="Rob Tester",
            comments=["Thanks!", not_reproducible],
        ),
    ]
