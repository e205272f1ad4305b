"""Payload mapping without a database: scrubbing, canonical text, reject reasons."""

from __future__ import annotations

from testio_sync.store import normalize

from . import payloads as api


def test_scrub_keeps_only_id_and_title_of_every_test_environment() -> None:
    """Also when nested somewhere unexpected, and without touching the input."""
    test = api.exploratory_test(1)
    wrapped = {"outer": [{"test_environment": dict(test["test_environment"])}]}
    assert normalize.scrub(test)["test_environment"] == {"id": 77, "title": "Staging"}
    assert normalize.scrub(wrapped) == {
        "outer": [{"test_environment": {"id": 77, "title": "Staging"}}]
    }
    assert test["test_environment"]["password"] == api.PASSWORD


def test_scrub_finds_a_nested_environment_beside_the_top_ones() -> None:
    """A list of tests whose environments sit at the top and, once, deeper inside one."""
    first, second = api.exploratory_test(1), api.exploratory_test(2)
    second["section"] = {"id": 5, "test_environment": dict(first["test_environment"])}
    scrubbed = normalize.scrub([first, second, {"id": 3, "test_environment": None}])
    assert [t["test_environment"] for t in scrubbed] == [
        {"id": 77, "title": "Staging"},
        {"id": 77, "title": "Staging"},
        None,
    ]
    assert scrubbed[1]["section"]["test_environment"] == {"id": 77, "title": "Staging"}
    assert api.PASSWORD not in normalize.canonical_json(scrubbed)
    assert second["section"]["test_environment"]["password"] == api.PASSWORD  # input untouched


def test_scrub_returns_a_clean_payload_as_it_is() -> None:
    """What the client scrubbed already is not copied again when it is stored."""
    clean = normalize.scrub(api.exploratory_test(1))
    assert normalize.scrub(clean) is clean
    assert normalize.scrub([clean]) == [clean]


def test_canonical_json_ignores_key_order() -> None:
    """Equal payloads give equal text, so change detection is a string compare."""
    assert normalize.canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == (
        normalize.canonical_json({"a": [1, {"c": 3, "d": 2}], "b": 1})
    )


def test_reject_reason_matches_folded_or_contained_default_comments() -> None:
    """Whitespace and case do not matter; a longer comment containing it still matches."""
    matcher = normalize.reason_matcher(api.REJECT_REASONS)
    exact = api.bug(
        1,
        test_id=1,
        status="rejected",
        comments=["  this is the INTENDED behavior   of the product. "],
    )
    longer = api.bug(
        2, test_id=1, status="rejected", comments=["Hi! This bug is already known to us. Thanks."]
    )
    open_bug = api.bug(3, test_id=1, comments=["This bug is already known to us."])
    assert normalize.reject_reason(exact, matcher) == "intended_behavior"
    assert normalize.reject_reason(longer, matcher) == "known_bug"
    assert normalize.reject_reason(open_bug, matcher) is None
    assert normalize.reject_reason(longer, {}) is None
