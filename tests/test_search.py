"""Search against a real sync of the simulator, checked by scanning the simulator's own data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testsupport import make_settings
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.errors import UsageError
from testio_sync.insights import search as full_text
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.simulator.render import Renderer
from testio_sync.store import queries, save
from testio_sync.store.db import close_database, open_store
from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncStatus

WITH_BUGS = (*DEFAULT_PHASES, SyncPhase.BUGS)


def sync(service: SyncService) -> None:
    result = service.execute_sync(WITH_BUGS, allow_in_process=True).wait(120)
    assert result.status == SyncStatus.SUCCEEDED, result.errors


@pytest.fixture(scope="module")
def synced(
    module_store: str, tiny_server: tuple[Simulator, str], tmp_path_factory: Any
) -> Iterator[Settings]:
    """The tiny simulator synced once (on each store), bugs included (tests only read it)."""
    settings = make_settings(tmp_path_factory.mktemp("search") / "home", tiny_server[1])
    sync(SyncService(settings))
    yield settings
    close_database(settings.db_path)


@pytest.fixture
def store(synced: Settings) -> Settings:
    open_store(synced)  # other tests may have bound another store meanwhile
    return synced


def bug_texts(sim: Simulator) -> dict[int, str]:
    """Each bug's searchable text, from the payload the simulator serves."""
    renderer = Renderer(sim.world)
    texts = {}
    for bid in sim.world.bugs:
        bug = json.loads(renderer.bug_bytes(bid))
        steps = bug["steps"] if isinstance(bug["steps"], list) else [bug["steps"]]
        texts[bid] = " ".join([bug["title"], *steps, bug["actual_result"], bug["expected_result"]])
    return texts


def all_hits(query: str, **kw: Any) -> list[dict[str, Any]]:
    """Every result of a search, page by page."""
    results: list[dict[str, Any]] = []
    while True:
        answer = full_text.search(
            full_text.SearchRequest.parse(query, limit=100, offset=len(results), **kw)
        )
        results.extend(answer["results"])
        if "next_offset" not in answer:
            assert answer["total"] == len(results)
            return results


@pytest.mark.parametrize("word", ["checkout", "typo", "wishlist", "picker", "500"])
def test_every_bug_containing_a_word_is_found(store, tiny_server, word: str) -> None:
    pattern = re.compile(rf"\b{word}\b", re.IGNORECASE)
    expected = {bid for bid, text in bug_texts(tiny_server[0]).items() if pattern.search(text)}
    assert expected, "pick a word the data holds"
    found = [hit["id"] for hit in all_hits(word, entities=["bug"])]
    assert len(found) == len(set(found))
    assert set(found) == expected


def test_a_phrase_matches_only_the_words_in_that_order(store, tiny_server) -> None:
    texts = bug_texts(tiny_server[0])
    expected = {bid for bid, text in texts.items() if "error message" in text.lower()}
    loose = {bid for bid, t in texts.items() if "error" in t.lower() and "message" in t.lower()}
    found = {hit["id"] for hit in all_hits('"error message"', entities=["bug"])}
    assert found == expected and expected <= loose


def test_operators_are_words_in_simple_mode_and_syntax_in_raw_mode(store, tiny_server) -> None:
    texts = bug_texts(tiny_server[0])
    either = {bid for bid, text in texts.items() if re.search(r"\b(checkout|login)\b", text, re.I)}
    raw = {hit["id"] for hit in all_hits("checkout OR login", entities=["bug"], mode="raw")}
    assert raw == either
    assert all_hits("checkout OR login", entities=["bug"]) == []  # "or" is just a word here
    assert all_hits('checkout AND NOT NEAR( "', entities=["bug"]) == []


def test_raw_mode_means_the_same_on_every_store(store, tiny_server) -> None:
    """NOT, parentheses, column filters and NEAR, against the simulator's own texts."""
    sim = tiny_server[0]
    texts = bug_texts(sim)
    titles = {bid: json.loads(Renderer(sim.world).bug_bytes(bid))["title"] for bid in texts}

    def has(word: str, text: str) -> bool:
        return re.search(rf"\b{word}\b", text, re.I) is not None

    def raw(query: str) -> set[int]:
        return {hit["id"] for hit in all_hits(query, entities=["bug"], mode="raw")}

    unless = {b for b, t in texts.items() if has("checkout", t) and not has("login", t)}
    assert unless and raw("checkout NOT login") == unless
    either_but = {
        b
        for b, t in texts.items()
        if (has("checkout", t) or has("login", t)) and not has("typo", t)
    }
    assert raw("(checkout OR login) NOT typo") == either_but
    in_title = {b for b, t in titles.items() if has("checkout", t)}
    assert in_title and raw("title:checkout") == in_title
    assert raw("{title body}: checkout") == raw("checkout")
    near = raw("NEAR(checkout page)")
    assert near and near <= {b for b, t in texts.items() if has("checkout", t) and has("page", t)}
    assert raw("check*") >= raw("checkout")


def test_the_last_word_is_a_prefix(store) -> None:
    full = {h["id"] for h in all_hits("checkout", entities=["bug"])}
    assert {h["id"] for h in all_hits("check", entities=["bug"])} >= full
    assert all_hits('"check"', entities=["bug"]) == []  # a quoted word is exact


def test_snippets_mark_the_matched_words_and_results_carry_freshness(store) -> None:
    answer = full_text.search(full_text.SearchRequest.parse("checkout", limit=5))
    assert answer["data_as_of"] and answer["total"] >= 5
    for hit in answer["results"]:
        assert re.search(r"\*\*checkout\*\*", hit["snippet"], re.I), hit
        assert hit["score"] > 0 and hit["product_id"]
    scores = [hit["score"] for hit in answer["results"]]
    assert scores == sorted(scores, reverse=True)


def test_filters_products_entities_and_dates(store, tiny_server) -> None:
    sim = tiny_server[0]
    pid = sorted(sim.world.products)[0]
    scoped = all_hits("checkout", product_ids=[pid])
    assert scoped and all(hit["product_id"] == pid for hit in scoped)
    tests = all_hits("issues", entities=["test", "product"])
    assert len(tests) == len(sim.world.tests) and {hit["entity"] for hit in tests} == {"test"}
    dated = all_hits("checkout", start_date="2026-09-01", end_date="2026-09-30")
    assert all("2026-09-01" <= hit["date"] <= "2026-09-30" for hit in dated)
    expected = {
        b.id
        for b in sim.world.bugs.values()
        if "Checkout" in json.loads(Renderer(sim.world).bug_bytes(b.id))["title"]
    }
    assert {h["id"] for h in dated if h["entity"] == "bug"} <= expected


def test_pages_split_the_ranking_without_overlap(store) -> None:
    first = full_text.search(full_text.SearchRequest.parse("checkout", limit=7))
    second = full_text.search(full_text.SearchRequest.parse("checkout", limit=7, offset=7))
    both = full_text.search(full_text.SearchRequest.parse("checkout", limit=14))
    keys = [(h["entity"], h["id"]) for h in first["results"] + second["results"]]
    assert keys == [(h["entity"], h["id"]) for h in both["results"]]
    assert first["total"] == second["total"] == both["total"] and first["next_offset"] == 7


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"query": "  "}, "give at least one word"),
        ({"query": "?!"}, "give at least one word"),
        ({"query": "x", "entities": ["bugs"]}, "entities: unknown bugs"),
        ({"query": "x", "limit": 101}, "limit must be between 1 and 100"),
        ({"query": "x", "mode": "regex"}, "mode: use simple or raw"),
        ({"query": "x", "start_date": "2026-02-01", "end_date": "2026-01-01"}, "is after"),
        ({"query": "x", "product_ids": [0]}, "positive"),
    ],
)
def test_bad_requests_are_refused_in_one_line(args: dict[str, Any], reason: str) -> None:
    query = args.pop("query")
    with pytest.raises(UsageError, match=reason) as caught:
        full_text.SearchRequest.parse(query, **args)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("query", ['"unclosed', "checkout AND", "NEAR(", "nocolumn:x"])
def test_a_raw_syntax_error_is_one_line(store, query: str) -> None:
    with pytest.raises(UsageError, match="not valid FTS5 syntax") as caught:
        full_text.search(full_text.SearchRequest.parse(query, mode="raw"))
    assert "\n" not in str(caught.value) and "sqlite" not in str(caught.value).lower()


def test_the_cli_prints_hits_and_json(store) -> None:
    runner = CliRunner(env=store.to_env())
    text = runner.invoke(cli.app, ["search", "checkout", "--entity", "bug", "--limit", "3"])
    assert text.exit_code == 0, text.output
    assert text.stdout.count("**Checkout**") >= 3 and "1-3 of" in text.stdout
    out = runner.invoke(cli.app, ["search", "checkout", "-e", "bug", "--json", "--offset", "2"])
    data = json.loads(out.stdout)
    assert data["offset"] == 2 and {h["entity"] for h in data["results"]} == {"bug"}
    bad = runner.invoke(cli.app, ["search", "a AND", "--raw"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: query is not valid FTS5")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_status_check_reports_a_drifted_index_and_repair_fixes_it(store) -> None:
    runner = CliRunner(env=store.to_env())
    ok = runner.invoke(cli.app, ["status", "--check", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["search_index"]["ok"] is True
    with queries.database.connection_context():
        queries.database.execute_sql("DELETE FROM search_docs WHERE entity = 'product'")
    try:
        drift = runner.invoke(cli.app, ["status", "--check"])
        assert drift.exit_code == 1 and "DIFFERS" in drift.stdout
        fixed = runner.invoke(cli.app, ["status", "--check", "--repair"])
        assert fixed.exit_code == 0 and "Search index: ok" in fixed.stdout
    finally:
        save.rebuild_search_index()


def test_upstream_deletions_and_a_scoped_nuke_leave_no_stale_hit(
    fresh_server: tuple[Simulator, str], home: Path, store_backend: str
) -> None:
    sim, url = fresh_server
    service = SyncService(make_settings(home, url, cache_ttl_s=0))
    sync(service)
    before = {(h["entity"], h["id"]) for h in all_hits("checkout")}
    changes = sim.advance(hours=96)
    assert changes["deleted_tests"]
    sync(service)
    after = {(h["entity"], h["id"]) for h in all_hits("checkout")}
    gone_tests = set(changes["deleted_tests"])
    assert not {key for key in after if key[0] == "test"} & {("test", t) for t in gone_tests}
    assert {i for e, i in after if e == "bug"} <= set(sim.world.bugs)
    assert before != after
    assert queries.check_search_index().ok

    pid = sorted(sim.world.products)[0]
    save.wipe([pid])
    assert all_hits("checkout", product_ids=[pid]) == []
    assert queries.check_search_index().ok
