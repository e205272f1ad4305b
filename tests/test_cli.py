"""``testio-sync sync``, ``status`` and ``--help`` through typer's CliRunner against the simulator.

Settings reach the CLI the way users give them: ``TESTIO_*`` environment variables.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import TOKEN, make_settings
from store import payloads
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.cli import support as cli_support
from testio_sync.dates import to_iso
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store import queries, save
from testio_sync.store.db import open_store
from testio_sync.store.models import database
from testio_sync.sync import runs
from testio_sync.sync.lock import SyncLock
from testio_sync.sync.types import SyncResult, SyncStatus
from testio_sync.tasks.liveness import worker_alive

ENTITIES = ("products", "tests", "bugs", "features", "users")
RESULT_KEYS = set(SyncResult(run_id="x", status=SyncStatus.SUCCEEDED).to_dict())


pytestmark = pytest.mark.usefixtures("store_backend")  # each test on both stores


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def invoke(settings: Settings, *args: str, env: dict[str, str | None] | None = None) -> Result:
    runner = CliRunner(env={**settings.to_env(), **(env or {})})
    return runner.invoke(cli.app, list(args))


def counts(settings: Settings, product_ids: list[int] | None = None) -> dict[str, int]:
    open_store(settings)
    return queries.entity_counts(product_ids)


def run_count(settings: Settings) -> int:
    """Rows in ``sync_events`` (0 when no database was ever created)."""
    if not settings.db_path.exists():
        return 0
    open_store(settings)
    return len(runs.recent_runs(10_000))


def truth(sim: Simulator, names: tuple[str, ...] = ENTITIES) -> dict[str, int]:
    data = sim.truth()
    return {name: data[name] for name in names}


def product_ids(sim: Simulator) -> list[int]:
    return sorted(int(pid) for pid in sim.truth()["per_product"])


def sync_json(settings: Settings, *args: str) -> dict:
    result = invoke(settings, "sync", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def slow_server() -> Iterator[tuple[Simulator, str]]:
    """A simulator that answers every request after 0.8 s, so a sync takes seconds."""
    sim = Simulator(scale="tiny", seed=3, token=TOKEN, latency_ms=800)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


@pytest.fixture
def worker(settings: Settings, consumer: object) -> object:
    """The conftest ``consumer``, once it counts as alive (its start-up hook takes the lock)."""
    wait_until(lambda: worker_alive(settings.worker_lock_path))
    return consumer


# -- modes and filters ----------------------------------------------------------------


def test_default_sync_without_a_worker_runs_in_process_and_mirrors_the_catalog(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """No worker: the CLI says so, runs the job itself, and the data arrives."""
    result = invoke(settings, "sync")
    assert result.exit_code == 0, result.output
    assert "No worker is running: running the sync in this process" in result.stdout
    assert "Sync completed in " in result.stdout
    assert "Traceback" not in result.output
    names = ("products", "tests", "features")
    assert {k: counts(settings)[k] for k in names} == truth(tiny_server[0], names)


def test_with_bugs_brings_every_count_to_the_simulator_truth(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """``--with-bugs`` adds the bug phase; afterwards the mirror equals the source."""
    data = sync_json(settings, "--with-bugs")
    assert data["phases_completed"] == ["products", "features", "new_tests", "bugs"]
    assert counts(settings) == truth(tiny_server[0])


def test_force_refetches_features_a_default_sync_leaves_fresh(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """A second default sync finds features fresh; ``--force`` fetches them again."""
    sync_json(settings)
    assert sync_json(settings)["features_refreshed"] == 0
    forced = sync_json(settings, "--force")
    assert forced["status"] == "succeeded"
    assert forced["features_refreshed"] == tiny_server[0].truth()["features"]


def test_incremental_only_runs_only_the_new_tests_phase(settings: Settings) -> None:
    """``--incremental-only`` skips products and features."""
    sync_json(settings)
    data = sync_json(settings, "--incremental-only")
    assert data["phases_completed"] == ["new_tests"]
    assert data["products_synced"] == 0


@pytest.mark.parametrize("style", ["comma", "repeated"])
def test_product_ids_limit_the_sync_to_those_products(
    settings: Settings, tiny_server: tuple[Simulator, str], style: str
) -> None:
    """``--product-ids`` takes a comma list or repeats; other products stay out."""
    sim = tiny_server[0]
    first, second = product_ids(sim)[:2]
    args = (
        ["--product-ids", f"{first},{second}"]
        if style == "comma"
        else ["-p", str(first), "--product-ids", str(second)]
    )
    sync_json(settings, *args)
    per_product = sim.truth()["per_product"]
    stored = counts(settings)
    assert stored["products"] == 2
    assert stored["tests"] == sum(per_product[str(p)]["tests"] for p in (first, second))


def test_a_single_product_id_in_the_environment_scopes_the_sync(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """``TESTIO_PRODUCT_IDS`` with one id is the default scope, not ignored."""
    only = product_ids(tiny_server[0])[0]
    result = invoke(settings, "sync", env={"TESTIO_PRODUCT_IDS": str(only)})
    assert result.exit_code == 0, result.output
    open_store(settings)
    assert queries.product_ids() == [only]


def test_since_syncs_the_tests_ending_after_it_with_their_bugs(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """``--since DATE --with-bugs`` stores every test ending on or after DATE, with its bugs."""
    sim = tiny_server[0]
    with sim.lock:
        now = int(sim.now.timestamp())
        ended = sorted(t.end_at for t in sim.world.tests.values() if t.end_at < now)
        day = datetime.fromtimestamp(ended[len(ended) // 2], UTC).date()
        cutoff = datetime(day.year, day.month, day.day, tzinfo=UTC)
        recent = {
            t.id: len(sim.world.bugs_by_test[t.id])
            for t in sim.world.tests.values()
            if t.end_at >= cutoff.timestamp()
        }
    data = sync_json(settings, "--since", day.isoformat(), "--with-bugs")
    assert data["status"] == "succeeded"
    open_store(settings)
    assert runs.get_run(data["run_id"]).scope["since_date"] == to_iso(cutoff)
    stored = queries.bug_counts_by_test(list(recent))
    assert {tid: stored[tid]["total"] for tid in recent} == recent
    assert sum(recent.values()) > 0


def test_json_output_is_the_sync_result_and_nothing_else(settings: Settings) -> None:
    """``--json`` prints ``SyncResult.to_dict()``; notes go to stderr."""
    result = invoke(settings, "sync", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == RESULT_KEYS
    assert data["status"] == "succeeded"
    assert "No worker is running" in result.stderr


def test_quiet_prints_only_the_outcome(settings: Settings) -> None:
    """``--quiet``: no progress, no notes, one outcome line."""
    result = invoke(settings, "sync", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Sync completed in ")
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == ""


def test_verbose_lists_counts_per_product(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """``--verbose`` adds a per-product breakdown to the summary."""
    result = invoke(settings, "sync", "--verbose")
    assert result.exit_code == 0, result.output
    assert "Per product:" in result.stdout
    for pid in product_ids(tiny_server[0]):
        assert f"  {pid}: " in result.stdout


# -- bad input: exit 2, nothing recorded ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--force", "--nuke"], "--force and --nuke"),
        (["--incremental-only", "--nuke"], "--incremental-only and --nuke"),
        (["--force", "--incremental-only"], "--force and --incremental-only"),
        (["--nuke", "--since", "30d"], "--nuke and --since"),
        (["--verbose", "--quiet"], "--verbose and --quiet"),
        (["--since", "tomorrow"], "in the future"),
        (["--since", "31/02"], "is not a date"),
        (["--since", "2026-02-31"], "is not a date"),
        (["--product-ids", "abc"], "'abc' is not a positive product id"),
        (["--product-ids", "-5"], "'-5' is not a positive product id"),
        (["--product-ids", "0"], "'0' is not a positive product id"),
        (["--product-ids", ","], "at least one product id"),
    ],
)
def test_bad_input_exits_2_with_one_error_line_and_records_nothing(
    settings: Settings, args: list[str], message: str
) -> None:
    """Contradictions and bad values stop before anything is enqueued."""
    result = invoke(settings, "sync", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert run_count(settings) == 0


def test_an_unknown_product_id_is_a_usage_error_once_products_are_known(
    settings: Settings,
) -> None:
    """After a sync, a product id the store does not know is refused (exit 2, no run)."""
    sync_json(settings)
    before = run_count(settings)
    result = invoke(settings, "sync", "--product-ids", "987654")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --product-ids: Unknown product id(s): 987654; see the stored products with "
        "`testio-sync status`, fetch them with `testio-sync sync`.\n"
    )
    assert run_count(settings) == before


MCP_NAMES = re.compile(
    r"sync_data|list_products|list_tests|list_bugs|get_\w+|product_ids|start_date|end_date|"
    r"test_ids|testing_type|statuses|\bcache\b"
)


@pytest.mark.sqlite_only  # argument checks, worded the same whatever the store
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sync", "--since", "tomorrow"], "Error: --since: 'tomorrow' is in the future."),
        (
            ["report", "-p", "1", "--start-date", "soon"],
            "Error: --start-date: 'soon' is not a date; use YYYY-MM-DD, '30 days ago' or '30d'.",
        ),
        (
            ["report", "-p", "1", "--start-date", "2026-02-01", "--end-date", "2026-01-01"],
            "Error: --start-date: 2026-02-01 is after the end date 2026-01-01.",
        ),
        (
            ["report", "-p", "424242"],
            "Error: Product(s) 424242 not in the local mirror; see the stored products with "
            "`testio-sync status`, fetch them with `testio-sync sync`.",
        ),
        (
            ["report", "-p", "1", "--test-ids", "5", "--status", "archived"],
            "Error: --test-ids: test ids replace the filters: drop the date, status and "
            "testing type filters.",
        ),
    ],
)
def test_usage_errors_speak_the_cli_s_own_names(
    settings: Settings, args: list[str], expected: str
) -> None:
    """Flags as the CLI spells them, CLI commands as the fix; no MCP tool or parameter."""
    sync_json(settings)
    result = invoke(settings, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr == expected + "\n"
    assert MCP_NAMES.search(result.stderr) is None


def test_a_bad_setting_in_the_environment_is_a_usage_error(settings: Settings) -> None:
    """A malformed ``TESTIO_PRODUCT_IDS`` gets one error line, exit 2."""
    result = invoke(settings, "sync", env={"TESTIO_PRODUCT_IDS": "598,abc"})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: TESTIO_PRODUCT_IDS")
    assert run_count(settings) == 0


def test_a_missing_token_is_a_usage_error_before_any_run(settings: Settings) -> None:
    """Without a token (and no worker) the sync is refused before it is recorded."""
    result = invoke(settings, "sync", env={"TESTIO_CUSTOMER_API_TOKEN": None})
    assert result.exit_code == 2
    assert "TESTIO_CUSTOMER_API_TOKEN" in result.stderr
    assert run_count(settings) == 0


# -- failures: exit 1, 3, 4 ----------------------------------------------------------


def test_a_revoked_token_fails_the_sync_with_exit_1(
    home: Path, fresh_server: tuple[Simulator, str]
) -> None:
    """A 401 stops the run; the summary says it failed and the exit code is 1."""
    sim, base_url = fresh_server
    sim.update_faults(token_revoked=True)
    settings = make_settings(home, base_url)
    result = invoke(settings, "sync")
    assert result.exit_code == 1, result.output
    assert "Sync failed after " in result.stdout
    assert "Errors (1):" in result.stdout


def test_an_unreachable_api_fails_the_sync_with_exit_1(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed port: the retries give up, the run fails, exit 1, no traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(home, f"http://127.0.0.1:{port}/customer/v2")
    monkeypatch.setattr(cli_support, "load_settings", lambda: Settings.from_env(max_retries=0))
    result = invoke(settings, "sync", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    assert data["errors"]
    assert "Traceback" not in result.output


def test_a_product_the_token_cannot_see_makes_the_sync_partial_with_exit_3(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """One visible and one stored but no longer listed product: errors, exit 3.

    (A product id neither the store nor the API knows is a usage error, exit 2.)
    """
    visible = product_ids(tiny_server[0])[0]
    sync_json(settings, "--product-ids", str(visible))
    with database.connection_context():
        save.save_products([payloads.product(987654)], now=datetime.now(UTC))
    result = invoke(settings, "sync", "--product-ids", f"{visible},987654")
    assert result.exit_code == 3, result.output
    assert "Sync finished with errors in " in result.stdout
    assert "987654" in result.stdout
    assert counts(settings)["products"] == 2  # the unlisted product is kept, not dropped


@pytest.mark.sqlite_only  # holds the file lock; tests/sync/test_pg_lock.py holds PostgreSQL's
def test_a_sync_lock_held_elsewhere_past_the_wait_exits_4(settings: Settings) -> None:
    """Another holder keeps the lock longer than TESTIO_SYNC_LOCK_TIMEOUT_SECONDS: exit 4."""
    settings.ensure_home()
    lock = SyncLock(settings.lock_path, run_id="x", timeout_s=0)
    lock.acquire_blocking()
    try:
        result = invoke(settings, "sync", env={"TESTIO_SYNC_LOCK_TIMEOUT_SECONDS": "1"})
    finally:
        lock.release_blocking()
    assert result.exit_code == 4, result.output
    assert "holds the lock" in result.stdout
    assert "Sync failed after " in result.stdout


def test_timeout_stops_an_in_process_run_and_records_it_failed(
    home: Path, slow_server: tuple[Simulator, str]
) -> None:
    """``--timeout`` on a run in this process stops it cleanly: exit 5, row failed."""
    settings = make_settings(home, slow_server[1])
    result = invoke(settings, "sync", "--timeout", "0.5", "--json")
    assert result.exit_code == 5, result.output
    assert "did not finish within 0.5s" in result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    open_store(settings)
    assert runs.get_run(data["run_id"]).status == "failed"


# -- worker, --no-wait --------------------------------------------------------------


def test_no_wait_without_a_worker_refuses_and_records_nothing(settings: Settings) -> None:
    """``--no-wait`` needs a worker to hand the run to: exit 1, clear message."""
    result = invoke(settings, "sync", "--no-wait")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no worker is running")
    assert "testio-sync worker" in result.stderr
    assert run_count(settings) == 0


def test_no_wait_with_a_worker_prints_the_run_id_and_the_worker_runs_it(
    settings: Settings, worker: object
) -> None:
    """The CLI returns at once with the run id; the worker finishes the run."""
    from testio_sync.service import SyncService

    result = invoke(settings, "sync", "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["attached"] is False
    outcome = SyncService(settings).handle(data["run_id"]).wait(timeout_s=60)
    assert outcome.status == SyncStatus.SUCCEEDED


def test_no_wait_names_the_status_command_that_follows_its_run(
    settings: Settings, worker: object
) -> None:
    """The text answer gives the run id and `status RUN_ID`, which then shows that run."""
    from testio_sync.service import SyncService

    result = invoke(settings, "sync", "--no-wait")
    assert result.exit_code == 0, result.output
    first, follow = result.stdout.splitlines()
    run_id = re.fullmatch(r"Queued sync run (\w+) for the worker\.", first).group(1)
    assert follow == f"Follow it with `testio-sync status {run_id}`."
    SyncService(settings).handle(run_id).wait(timeout_s=60)
    shown = invoke(settings, "status", run_id)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"Run {run_id} (products, features, new_tests completed)")


def test_with_a_worker_the_sync_runs_there_and_the_cli_waits(
    settings: Settings, worker: object
) -> None:
    """A live worker takes the run; no in-process note, same summary."""
    result = invoke(settings, "sync")
    assert result.exit_code == 0, result.output
    assert "No worker is running" not in result.output
    assert "Sync completed in " in result.stdout


# -- status, dry run, help ---------------------------------------------------------


def test_status_json_reports_counts_worker_and_recent_runs(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """``status --json`` parses; its counts are the simulator's, its last run the one we ran."""
    run_id = sync_json(settings, "--with-bugs")["run_id"]
    result = invoke(settings, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"] == truth(tiny_server[0])
    assert data["recent_runs"][0]["run_id"] == run_id
    assert data["recent_runs"][0]["status"] == "succeeded"
    assert data["worker_alive"] is False
    assert data["last_sync_completed"] is not None
    assert data["products"][0]["tests_synced_at"].endswith("Z")


def test_status_text_shows_data_worker_lock_and_runs(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """Plain ``status`` names the database, the simulator's counts and the last runs."""
    run_id = sync_json(settings)["run_id"]
    result = invoke(settings, "status")
    assert result.exit_code == 0, result.output
    real = truth(tiny_server[0])
    assert f"Data: {real['products']} products, {real['tests']} tests" in result.stdout
    assert "Worker: not running" in result.stdout
    assert "Sync lock: free" in result.stdout
    assert run_id in result.stdout


def test_dry_run_on_an_empty_store_writes_nothing(settings: Settings) -> None:
    """A dry run before any sync fetches nothing and records no run."""
    result = invoke(settings, "sync", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run" in result.stdout
    assert "Estimated API requests: 1" in result.stdout
    assert run_count(settings) == 0
    assert counts(settings)["products"] == 0


def test_dry_run_lists_products_and_estimates_a_forced_sync(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """After a sync, ``--dry-run --force --json`` shows every product and a page estimate."""
    sync_json(settings)
    before_runs, before_counts = run_count(settings), counts(settings)
    result = invoke(settings, "sync", "--dry-run", "--force", "--with-bugs", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    sim = tiny_server[0]
    assert plan["mode"] == "force"
    assert [p["id"] for p in plan["products"]] == product_ids(sim)
    per_product = sim.truth()["per_product"]
    pages = sum(math.ceil(row["tests"] / 25) + 1 for row in per_product.values())
    assert plan["estimate"]["new_tests"] == pages
    assert plan["estimate"]["bugs"] > 0
    assert run_count(settings) == before_runs
    assert counts(settings) == before_counts


def test_serve_hands_its_options_to_the_mcp_server(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` delegates to ``mcp_server.run_server`` with the transport and worker choice."""
    from testio_sync import mcp_server

    calls: list[tuple[Path, dict[str, object]]] = []
    monkeypatch.setattr(mcp_server, "run_server", lambda s, **kw: calls.append((s.home, kw)))
    result = invoke(settings, "serve", "--transport", "http", "--port", "9999", "--no-worker")
    assert result.exit_code == 0, result.output
    options = {"transport": "http", "host": "127.0.0.1", "port": 9999, "start_worker": False}
    assert calls == [(settings.home, options)]


@pytest.mark.parametrize("command", ["sync", "status", "restore", "worker", "simulate", "serve"])
def test_every_command_has_help_with_an_example(settings: Settings, command: str) -> None:
    """``<command> --help`` exits 0 and ends with an example."""
    result = invoke(settings, command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout
    assert f"$ testio-sync {command}" in result.stdout


def test_app_help_lists_the_exit_codes(settings: Settings) -> None:
    """The top-level help documents every exit code."""
    result = invoke(settings, "--help")
    assert result.exit_code == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130"):
        assert f" {code}" in result.stdout
    assert "Exit codes:" in result.stdout


COMMANDS_IN_ORDER = [
    "sync",
    "status",
    "report",
    "query",
    "search",
    "show",
    "list",
    "restore",
    "backups",
    "db",
    "worker",
    "serve",
    "demo",
    "simulate",
]
# What typer prints for a parameter's Python type, and a metavar bracketed twice.
TYPE_PLACEHOLDER = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\]|[a-z]+(\|[a-z]+)+)>|\[\[")


def test_commands_are_listed_in_the_order_a_user_needs_them(settings: Settings) -> None:
    """Top-level help lists sync first and the simulator tools last, each once."""
    result = invoke(settings, "--help", env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^│ (\w+) {2,}", result.stdout, flags=re.MULTILINE)
    assert listed == COMMANDS_IN_ORDER


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS_IN_ORDER)])
def test_help_names_values_without_type_placeholders(
    settings: Settings, command: list[str]
) -> None:
    """No ``<bool>``, ``<str>``, ``<stdio|http>`` or ``[[BACKUP]]`` in any ``--help``."""
    result = invoke(settings, *command, "--help", env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert TYPE_PLACEHOLDER.search(result.stdout) is None, result.stdout
    if command:
        assert f"$ testio-sync {command[0]}" in result.stdout


def test_value_options_show_a_metavar_and_flags_none(settings: Settings) -> None:
    """``--port PORT`` and ``--transport stdio|http`` say what to give; ``--json`` takes nothing."""
    serve = invoke(settings, "serve", "--help", env={"COLUMNS": "120"}).stdout
    assert re.search(r"--port +PORT ", serve)
    assert re.search(r"--transport +stdio\|http ", serve)
    assert re.search(r"--no-worker +Do not start", serve)
    restore = invoke(settings, "restore", "--help", env={"COLUMNS": "120"}).stdout
    assert "Usage: testio-sync restore [OPTIONS] [BACKUP]" in restore


def test_version_prints_the_package_version(settings: Settings) -> None:
    from importlib import metadata

    result = invoke(settings, "--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"testio-sync {metadata.version('testio-sync')}\n"


def test_shell_completion_is_offered_and_completes_commands(settings: Settings) -> None:
    """``--install-completion`` is listed; the completion hook answers with command names."""
    assert "--install-completion" in invoke(settings, "--help").stdout
    script = invoke(settings, "--show-completion", "bash")
    assert script.exit_code == 0, script.output
    assert "_testio_sync_completion" in script.stdout
    env = {
        "_TESTIO_SYNC_COMPLETE": "complete_bash",
        "COMP_WORDS": "testio-sync st",
        "COMP_CWORD": "1",
    }
    runner = CliRunner(env={**settings.to_env(), **env})
    done = runner.invoke(cli.app, [], prog_name="testio-sync")
    assert done.stdout.split() == ["status"]


# -- status RUN_ID -------------------------------------------------------------------


def test_status_run_id_shows_that_runs_result(
    settings: Settings, tiny_server: tuple[Simulator, str]
) -> None:
    """``status RUN_ID`` prints the run's summary; with ``--json`` its record."""
    sync = sync_json(settings)
    text = invoke(settings, "status", sync["run_id"])
    assert text.exit_code == 0, text.output
    real = truth(tiny_server[0], ("products",))
    assert text.stdout.splitlines()[0].startswith(f"Run {sync['run_id']} (products,")
    assert f"Products synced: {real['products']}" in text.stdout
    assert "Sync completed in " in text.stdout
    data = json.loads(invoke(settings, "status", sync["run_id"], "--json").stdout)
    assert data["run_id"] == sync["run_id"]
    assert data["status"] == "succeeded"
    assert data["result"]["products_synced"] == real["products"]


def test_status_run_id_follows_a_queued_run(settings: Settings) -> None:
    """A run no worker has taken yet shows as queued, waiting for the worker."""
    from testio_sync.sync.types import SyncRequest

    open_store(settings)
    run_id, _ = runs.create_or_attach(
        SyncRequest(), run_id="queued01", now=datetime.now(UTC), enqueue=None, owner_pid=os.getpid()
    )
    text = invoke(settings, "status", run_id)
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines() == [
        f"Run {run_id}: queued (phases: products, features, new_tests; started by cli)",
        "  waiting for the worker",
    ]
    data = json.loads(invoke(settings, "status", run_id, "--json").stdout)
    assert (data["status"], data["result"]) == ("queued", None)


def test_status_of_an_unknown_run_is_a_usage_error(settings: Settings) -> None:
    sync_json(settings)
    result = invoke(settings, "status", "nosuchrun")
    assert result.exit_code == 2
    assert result.stderr == "Error: No sync run 'nosuchrun' is recorded.\n"
