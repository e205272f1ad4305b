"""Contract tests for the ten endpoints over real HTTP (tiny scale, one shared server)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from testio_sync.simulator.vocabulary import REJECT_REASONS

SECTION_KEYS = {"id", "name", "connection", "test_templates"}


def _plain_product(tiny):
    return next(p for p in tiny.sim.world.products.values() if not p.sectioned)


def _sectioned_product(tiny):
    return next(p for p in tiny.sim.world.products.values() if p.sectioned)


def test_products_lists_every_product_with_its_sections(tiny):
    """Each product carries sections, sections_with_default and the default section id."""
    products = tiny.get("/products")["products"]
    assert [p["id"] for p in products] == list(tiny.sim.world.products)
    for product in products:
        assert product["type"] in {"website", "mobile_app_ios", "mobile_app_android"}
        default = product["sections_with_default"][0]
        assert default["name"] == "default-section"
        assert default["id"] == product["default_section_id"]
        assert all(set(s) == SECTION_KEYS for s in product["sections_with_default"])
    sectioned = [p for p in products if len(p["sections_with_default"]) > 1]
    assert sectioned and all(len(p["sections"]) >= 2 for p in sectioned)


def test_product_by_id_answers_the_same_object_as_the_list(tiny):
    """``products/{pid}`` wraps the list's product in the ``product`` envelope."""
    listed = tiny.get("/products")["products"][1]
    assert tiny.get(f"/products/{listed['id']}") == {"product": listed}


@pytest.mark.parametrize(
    "path",
    [
        "/products/1",
        "/products/1/exploratory_tests",
        "/exploratory_tests/1",
        "/bugs/1",
        "/products/1/features",
        "/no/such/endpoint",
        "/bugs/not-a-number",
    ],
)
def test_unknown_ids_and_paths_answer_404_with_a_json_body(tiny, path):
    """An unknown object is a 404 whose body is still JSON."""
    response = tiny.api.get(path)
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_features_of_a_product_without_sections_are_listed(tiny):
    """``products/{pid}/features`` lists the product's features with string user stories."""
    product = _plain_product(tiny)
    features = tiny.get(f"/products/{product.id}/features")["features"]
    assert [f["id"] for f in features] == tiny.sim.world.features_by_product[product.id]
    for feature in features:
        assert {"id", "title", "description", "howtofind", "user_stories"} <= set(feature)
        assert all(isinstance(story, str) for story in feature["user_stories"])


def test_features_of_a_sectioned_product_answer_422(tiny):
    """A sectioned product must be asked per section."""
    response = tiny.api.get(f"/products/{_sectioned_product(tiny).id}/features")
    assert response.status_code == 422
    assert "section" in response.json()["error"]


def test_section_features_can_share_a_feature_between_sections(tiny):
    """The same feature id appears under two sections; together they hold every feature once."""
    product = _sectioned_product(tiny)
    seen: dict[int, list[int]] = {}
    for section in product.sections:
        path = f"/products/{product.id}/sections/{section.id}/features"
        for feature in tiny.get(path)["features"]:
            seen.setdefault(feature["id"], []).append(section.id)
    assert sorted(seen) == sorted(tiny.sim.world.features_by_product[product.id])
    assert any(len(sections) > 1 for sections in seen.values())


def test_section_features_of_a_foreign_section_answer_404(tiny):
    plain, sectioned = _plain_product(tiny), _sectioned_product(tiny)
    response = tiny.api.get(f"/products/{plain.id}/sections/{sectioned.sections[0].id}/features")
    assert response.status_code == 404


def test_user_stories_of_a_sectioned_product_need_a_section_id(tiny):
    """Without ``section_id`` a sectioned product answers 400; with it, stories with ids."""
    product = _sectioned_product(tiny)
    assert tiny.api.get(f"/products/{product.id}/user_stories").status_code == 400
    stories = []
    for section in product.sections:
        path = f"/products/{product.id}/user_stories"
        stories += tiny.get(path, section_id=section.id)["user_stories"]
    assert stories
    assert all(set(story) == {"id", "title", "path", "feature_id"} for story in stories)


def test_user_stories_of_a_plain_product_need_no_section(tiny):
    product = _plain_product(tiny)
    stories = tiny.get(f"/products/{product.id}/user_stories")["user_stories"]
    expected = sum(
        len(tiny.sim.world.features[f].user_stories)
        for f in tiny.sim.world.features_by_product[product.id]
    )
    assert len(stories) == expected


def test_exploratory_test_detail_carries_credentials_and_test_features(tiny):
    """A test has product, section, test features and an environment with credentials."""
    test = next(t for t in tiny.sim.world.tests.values() if t.features)
    body = tiny.get(f"/exploratory_tests/{test.id}")["exploratory_test"]
    assert body["id"] == test.id
    assert body["product"]["id"] == test.product_id
    assert body["section"]["id"] == test.section_id
    assert body["test_environment"]["username"] and body["test_environment"]["password"]
    assert [f["feature_id"] for f in body["features"]] == [f.feature_id for f in test.features]
    assert all(f["id"] != f["feature_id"] for f in body["features"])
    assert body["requirements"][0]["category"]["name"] in {"Computers", "Smartphones", "Tablets"}
    assert body["review_status"] in {
        "not_finalized",
        "review_initialized",
        "review_successful",
        "review_failed",
    }


def test_bugs_of_named_tests_come_back_complete_in_one_answer(tiny):
    """``filter_test_cycle_ids`` returns every bug of those tests, unpaginated."""
    world = tiny.sim.world
    test_ids = [tid for tid, bugs in world.bugs_by_test.items() if bugs][:5]
    bugs = tiny.get("/bugs", filter_test_cycle_ids=",".join(map(str, test_ids)))["bugs"]
    expected = sorted(b for tid in test_ids for b in world.bugs_by_test[tid])
    assert sorted(b["id"] for b in bugs) == expected
    assert {b["test"]["id"] for b in bugs} == set(test_ids)


def test_bugs_can_be_filtered_by_product_and_by_section(tiny):
    world = tiny.sim.world
    product = _sectioned_product(tiny)
    by_product = tiny.get("/bugs", filter_product_ids=str(product.id))["bugs"]
    assert len(by_product) == sum(
        len(world.bugs_by_test[t.id]) for t in world.tests.values() if t.product_id == product.id
    )
    section = product.sections[0]
    by_section = tiny.get("/bugs", filter_section_ids=str(section.id))["bugs"]
    assert {world.tests[b["test"]["id"]].section_id for b in by_section} <= {section.id}


@pytest.mark.parametrize(
    "params", [{}, {"filter_test_cycle_ids": "1,x"}, {"filter_product_ids": ","}]
)
def test_bugs_without_a_usable_filter_answer_400(tiny, params):
    assert tiny.api.get("/bugs", params=params).status_code == 400


def test_a_bug_has_author_test_feature_devices_and_attachments(tiny):
    bug = next(b for b in tiny.sim.world.bugs.values() if b.test_feature_id)
    body = tiny.get(f"/bugs/{bug.id}")["bug"]
    assert body["author"] == {"name": bug.author}
    assert body["test"]["id"] == bug.test_id
    assert body["test_feature"]["id"] == bug.test_feature_id
    assert body["test_feature"]["feature"]["id"] == bug.feature_id
    assert body["devices"] and {"category", "vendor", "operating_system"} <= set(body["devices"][0])
    assert body["attachments"][0]["filename"]
    assert isinstance(body["steps"], list)


def test_rejected_bugs_carry_their_reasons_default_comment(tiny):
    """A rejected bug's reason is recoverable by matching its comments to the default comments."""
    comments = {comment for _, _, comment in REJECT_REASONS}
    rejected = [b for b in tiny.sim.world.bugs.values() if b.status == "rejected"]
    assert rejected
    for bug in rejected[:10]:
        bodies = [c["body"] for c in tiny.get(f"/bugs/{bug.id}")["bug"]["comments"]]
        assert len(comments.intersection(bodies)) == 1


def test_custom_bugs_carry_a_custom_report(tiny):
    bug = next(b for b in tiny.sim.world.bugs.values() if b.severity == "custom")
    report = tiny.get(f"/bugs/{bug.id}")["bug"]["report"]
    assert report["content"]["data"][0].keys() == {"key", "value"}


def test_reject_reasons_lists_the_seven_default_reasons(tiny):
    reasons = tiny.get("/bugs/reject_reasons")["reject_reasons"]
    assert [r["key"] for r in reasons] == [
        "device_not_relevant",
        "ignored_instructions",
        "intended_behavior",
        "irrelevant",
        "known_bug",
        "not_reproducible",
        "request_timeout",
    ]
    assert all(r["name"] and r["default_comment"] for r in reasons)


@pytest.mark.parametrize(
    "header",
    [None, "Token wrong", "Bearer test-token", "token test-token", "Token  test-token"],
)
def test_a_missing_or_wrong_token_answers_401(tiny, header):
    """Only ``Token <token>`` with exactly one space is accepted."""
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{tiny.server.base_url}/products", headers=headers)
    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_timestamps_use_mixed_offsets_for_the_same_clock(tiny):
    """Offsets differ between rows, so comparing the text would order them wrongly."""
    world = tiny.sim.world
    product_id = next(iter(world.products))
    tests = tiny.tests_of(product_id)
    stamps = [t["end_at"] for t in tests] + [t["start_at"] for t in tests]
    offsets = {s[-6:] for s in stamps}
    assert len(offsets) >= 4
    ends = [datetime.fromisoformat(t["end_at"]) for t in tests]
    assert ends == sorted(ends, reverse=True)
    assert [t["end_at"] for t in tests] != sorted((t["end_at"] for t in tests), reverse=True)
    first = world.tests[tests[0]["id"]]
    assert ends[0].astimezone(UTC).timestamp() == first.end_at
