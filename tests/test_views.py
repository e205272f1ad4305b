"""Entity views (library, MCP tools, CLI) against the simulator's own data after a real sync."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp import Client
from testsupport import make_settings
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.dates import to_iso
from testio_sync.errors import UsageError
from testio_sync.insights import views
from testio_sync.mcp_server import build_server
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.simulator.render import Renderer
from testio_sync.simulator.vocabulary import feature_title
from testio_sync.store.db import close_database, open_store
from testio_sync.sync.types import DEFAULT_PHASES, SyncPhase, SyncStatus

BUCKET = {  # the simulator's truth buckets -> the store's status buckets
    "forwarded": "open",
    "accepted": "active_accepted",
    "auto_accepted": "auto_accepted",
    "rejected": "rejected",
}


@pytest.fixture(scope="module")
def synced(
    module_store: str, tiny_server: tuple[Simulator, str], tmp_path_factory: Any
) -> Iterator[Settings]:
    settings = make_settings(tmp_path_factory.mktemp("views") / "home", tiny_server[1])
    result = SyncService(settings).execute_sync(
        (*DEFAULT_PHASES, SyncPhase.BUGS), allow_in_process=True
    )
    assert result.wait(120).status == SyncStatus.SUCCEEDED
    yield settings
    close_database(settings.db_path)


@pytest.fixture
def store(synced: Settings) -> Settings:
    open_store(synced)
    return synced


@pytest.fixture
def sim(tiny_server: tuple[Simulator, str]) -> Simulator:
    return tiny_server[0]


def iso(seconds: int) -> str | None:
    return to_iso(datetime.fromtimestamp(seconds, UTC))


def linked_tests(world: Any, feature_id: int) -> set[int]:
    """The tests that link the feature (through any of their test features)."""
    return {
        t.id
        for t in world.tests.values()
        if any(link.feature_id == feature_id for link in t.features)
    }


def bug_counts(bugs: list[Any]) -> dict[str, Any]:
    by_status = dict.fromkeys(BUCKET.values(), 0)
    for bug in bugs:
        by_status[BUCKET[bug.bucket]] += 1
    return {
        "total": len(bugs),
        "by_status": by_status,
        "by_severity": Counter(b.severity for b in bugs),
    }


def assert_counts(answer: dict[str, Any], bugs: list[Any]) -> None:
    expected = bug_counts(bugs)
    assert answer["total"] == expected["total"]
    # Non-zero buckets only: the store may add a bucket (e.g. an unknown status) at zero.
    assert {k: v for k, v in answer["by_status"].items() if v} == {
        k: v for k, v in expected["by_status"].items() if v
    }
    assert answer["by_severity"] == dict(expected["by_severity"])


def test_list_features_counts_stories_tests_and_bugs_like_the_simulator(store, sim) -> None:
    world = sim.world
    for pid in world.products:
        answer = views.list_features(pid, limit=100)
        rows = {row["id"]: row for row in answer["features"]}
        assert set(rows) == set(world.features_by_product[pid]) and answer["data_as_of"]
        for fid, row in rows.items():
            feature = world.features[fid]
            tests = linked_tests(world, fid)
            bugs = [b for b in world.bugs.values() if b.feature_id == fid]
            assert row == {
                "id": fid,
                "title": feature_title(feature.text_key, feature.revision),
                "user_stories": len(feature.user_stories),
                "tests": len(tests),
                "bugs": len(bugs),
            }
        by_bugs = views.list_features(pid, sort_by="bugs", limit=100)["features"]
        assert [r["bugs"] for r in by_bugs] == sorted((r["bugs"] for r in by_bugs), reverse=True)


def test_a_feature_summary_has_its_stories_tests_and_bug_buckets(store, sim) -> None:
    world = sim.world
    fid = max(world.features, key=lambda f: sum(b.feature_id == f for b in world.bugs.values()))
    answer = views.feature_summary(fid)
    feature = world.features[fid]
    assert answer["user_stories"] == [story for _, story in feature.user_stories]
    tests = linked_tests(world, fid)
    assert answer["test_count"] == len(tests)
    assert {t["id"] for t in answer["tests"]} <= tests
    assert_counts(answer["bugs"], [b for b in world.bugs.values() if b.feature_id == fid])


def test_list_users_counts_each_testers_bugs_and_each_customers_tests(store, sim) -> None:
    world = sim.world
    answer = views.list_users(limit=100)
    testers = Counter(b.author for b in world.bugs.values())
    created = Counter(t.created_by for t in world.tests.values())
    submitted = Counter(t.submitted_by for t in world.tests.values() if t.submitted_by)
    got = {(u["kind"], u["name"]): u for u in answer["users"]}
    assert answer["total"] == len(testers) + len(created.keys() | submitted.keys())
    for name, count in testers.items():
        user = got[("tester", name)]
        times = [b.reported_at for b in world.bugs.values() if b.author == name]
        assert user["bugs_reported"] == count
        assert (user["first_seen"], user["last_seen"]) == (iso(min(times)), iso(max(times)))
    for name in created.keys() | submitted.keys():
        user = got[("customer", name)]
        assert (user["tests_created"], user["tests_submitted"]) == (created[name], submitted[name])
    activity = [
        u["bugs_reported"] + u["tests_created"] + u["tests_submitted"] for u in answer["users"]
    ]
    assert activity == sorted(activity, reverse=True)
    testers_only = views.list_users(kind="tester", limit=100)
    assert {u["name"] for u in testers_only["users"]} == set(testers)


def test_list_users_days_keeps_only_the_recently_active(store, sim) -> None:
    world = sim.world
    now = world.now_datetime
    cutoff = (now - timedelta(days=30)).timestamp()
    recent = {b.author for b in world.bugs.values() if b.reported_at >= cutoff}
    answer = views.list_users(kind="tester", days=30, limit=100, now=now)
    assert {u["name"] for u in answer["users"]} == recent


def test_a_user_summary_has_their_bug_buckets_and_rates(store, sim) -> None:
    world = sim.world
    name = Counter(b.author for b in world.bugs.values()).most_common(1)[0][0]
    answer = views.user_summary(name)
    mine = [b for b in world.bugs.values() if b.author == name]
    assert_counts(answer["bugs"], mine)
    rejected = sum(b.bucket == "rejected" for b in mine)
    assert answer["bugs"]["rates"]["rejection_rate"] == round(rejected / len(mine), 4)
    assert answer["product_ids"] == sorted({world.tests[b.test_id].product_id for b in mine})


def test_a_bug_summary_is_the_whole_bug(store, sim) -> None:
    world = sim.world
    renderer = Renderer(world)
    rejected = next(b for b in world.bugs.values() if b.bucket == "rejected" and b.reject_reason)
    for bug in (rejected, next(iter(world.bugs.values()))):
        payload = json.loads(renderer.bug_bytes(bug.id))
        answer = views.bug_summary(bug.id)
        assert answer["steps"] == payload["steps"]
        assert answer["devices"] == payload["devices"]
        assert answer["reporter"] == bug.author
        assert answer["status"] == BUCKET[bug.bucket]
        assert answer["test"]["id"] == bug.test_id
        assert (answer["feature"] or {}).get("id") == bug.feature_id
        assert [c["body"] for c in answer["comments"]] == [c["body"] for c in payload["comments"]]
        assert answer["expected_result"] == payload["expected_result"] and answer["data_as_of"]
    assert views.bug_summary(rejected.id)["reject_reason"] == rejected.reject_reason


def test_a_product_summary_counts_like_the_simulator(store, sim) -> None:
    world = sim.world
    now = world.now_datetime
    for pid, product in world.products.items():
        answer = views.product_summary(pid, now=now)
        tests = [t for t in world.tests.values() if t.product_id == pid]
        ended = [t.end_at for t in tests if t.end_at <= world.now]

        def within(days: int, ended: list[int] = ended) -> int:
            return sum(e >= world.now - days * 86400 for e in ended)

        assert answer["name"] == product.name
        assert answer["features"] == len(world.features_by_product[pid])
        assert answer["tests"] == len(tests)
        assert answer["tests_by_status"] == dict(Counter(t.status for t in tests))
        assert answer["tests_ended_last_30_days"] == within(30)
        assert answer["tests_ended_last_90_days"] == within(90)
        assert answer["last_test_end"] == (iso(max(ended)) if ended else None)
        assert {s["id"] for s in answer["sections"]} >= {product.default_section.id}
        assert_counts(
            answer["bugs"], [b for b in world.bugs.values() if b.test_id in {t.id for t in tests}]
        )


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: views.bug_summary(1), "Bug 1 is not in the local cache"),
        (lambda: views.feature_summary(1), "Feature 1 is not in the local cache"),
        (lambda: views.product_summary(1), "Product 1 is not in the local cache"),
        (lambda: views.user_summary("Nobody Atall"), "User 'Nobody Atall' is not"),
        (lambda: views.list_features(1), "Product 1 is not in the local cache"),
        (lambda: views.list_users(kind="robot"), "kind: use tester, customer"),
        (lambda: views.list_users(days=0), "days must be 1 or more"),
        (lambda: views.list_features(1, sort_by="size"), "sort_by: use title, tests, bugs"),
    ],
)
def test_unknown_ids_and_bad_arguments_are_one_line_errors(store, call, reason: str) -> None:
    with pytest.raises(UsageError, match=reason) as caught:
        call()
    assert "\n" not in str(caught.value)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_mcp_tools_answer_the_views_and_refuse_unknown_ids(store, sim) -> None:
    bug_id = next(iter(sim.world.bugs))
    pid = next(iter(sim.world.products))
    async with Client(build_server(store)) as client:
        calls = {
            "get_bug_summary": ({"bug_id": bug_id}, views.bug_summary(bug_id)),
            "get_product_summary": ({"product_id": pid}, None),
            "list_features": ({"product_id": pid}, views.list_features(pid)),
            "list_users": ({"kind": "customer"}, views.list_users(kind="customer")),
        }
        for tool, (args, expected) in calls.items():
            result = await client.call_tool(tool, args)
            assert not result.is_error, result.content[0].text
            assert json.loads(result.content[0].text) == result.structured_content
            if expected is not None:
                assert result.structured_content == expected
        found = await client.call_tool("search", {"query": "checkout", "limit": 2})
        assert (
            found.structured_content["total"] > 2 and len(found.structured_content["results"]) == 2
        )
        for tool, args in (
            ("get_bug_summary", {"bug_id": 1}),
            ("get_user_summary", {"user": "Nobody Atall"}),
            ("search", {"query": "a AND", "mode": "raw"}),
            ("search", {"query": "x", "limit": 0}),
        ):
            result = await client.call_tool(tool, args)
            assert result.is_error, tool
            assert len(result.content[0].text.splitlines()) == 1, result.content[0].text


def test_the_cli_shows_and_lists(store, sim) -> None:
    runner = CliRunner(env=store.to_env())
    bug_id = next(iter(sim.world.bugs))
    shown = runner.invoke(cli.app, ["show", "bug", str(bug_id), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout) == views.bug_summary(bug_id)
    text = runner.invoke(cli.app, ["show", "bug", str(bug_id)])
    assert "steps:\n  1. Open the" in text.stdout
    name = next(iter(sim.world.bugs.values())).author
    assert runner.invoke(cli.app, ["show", "user", name]).exit_code == 0
    pid = next(iter(sim.world.products))
    listed = runner.invoke(cli.app, ["list", "features", "-p", str(pid), "--json"])
    assert json.loads(listed.stdout) == views.list_features(pid)
    users = runner.invoke(cli.app, ["list", "users", "--kind", "tester", "--sort-by", "name"])
    assert users.exit_code == 0 and "users:" in users.stdout
    for args, message in (
        (["show", "bug", "1"], "Error: Bug 1 is not in the local cache"),
        (["show", "bug", "x1"], "Error: bug id must be a whole number"),
        (["show", "robot", "1"], "Error: show: use bug, feature, user, product"),
        (["list", "features"], "Error: list features: give exactly one product"),
        (["list", "tests"], "Error: list: use features, users"),
    ):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
