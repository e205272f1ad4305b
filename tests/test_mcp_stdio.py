"""``testio-sync serve`` as a real stdio subprocess: the protocol pipe, the worker, the tools."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tty
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import LATEST_PROTOCOL_VERSION
from testsupport import server_env

from testio_sync.simulator import Simulator
from testio_sync.tasks.liveness import worker_alive

EXECUTED = ("running", "locked", "archived", "customer_finalized")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def stdio_server(env: dict[str, str], *flags: str) -> AsyncIterator[Client]:
    """``python -m testio_sync serve`` over stdio; any non-JSON line on its stdout fails."""
    garbage: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            garbage.append(message)

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "testio_sync", "serve", *flags], env=env
    )
    async with Client(params, message_handler=on_message, read_timeout_seconds=60) as client:
        yield client
    assert garbage == [], "the server wrote something other than JSON-RPC to stdout"


async def call(client: Client, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
    result = await client.call_tool(tool, args or {}, **kw)
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def wait_until(condition: Any, timeout_s: float = 15) -> None:
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_stdio_server_starts_one_shared_worker_syncs_and_stops_it_on_exit(
    tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """The first server starts a worker, a second one uses it; it stops after the last one."""
    home = tmp_path / "home"
    env = server_env(home, tiny_server)
    truth = tiny_server[0].truth()
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with stdio_server(env) as first:
        tools = (await first.list_tools()).tools
        listed = [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]
        assert len(json.dumps(listed)) <= 14_000
        synced = await call(first, "sync_data", {}, progress_callback=on_progress)
        status = await call(first, "get_sync_status")
        assert synced["status"] == "succeeded"
        assert synced["tests_discovered"] == truth["tests"], json.dumps(synced)
        assert progress and progress[-1] == 100
        assert status["worker_alive"] is True and status["worker_pid"]
        assert status["recent_runs"][0]["run_id"] == synced["run_id"]

        async with stdio_server(env) as second:
            shared = await call(second, "get_sync_status")
            assert shared["worker_pid"] == status["worker_pid"]
        # The client has waited for the second server to exit. Had it stopped the
        # worker, the next sync would find none and the first server would start another.
        again = await call(first, "sync_data", {"force": True})
        after = await call(first, "get_sync_status")
        assert again["status"] == "succeeded" and again["attached"] is False
        assert after["worker_pid"] == status["worker_pid"], "a worker not its own was stopped"
        assert worker_alive(home / "worker.lock")

    await wait_until(lambda: not worker_alive(home / "worker.lock"))


@pytest.mark.anyio
async def test_stdio_server_without_worker_syncs_in_process_and_reports(
    tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """--no-worker: no worker appears; sync_data still runs, and the report matches the world."""
    sim = tiny_server[0]
    home = tmp_path / "home"
    products = sorted(sim.world.products)
    with sim.lock:
        tests = [t for t in sim.world.tests.values() if t.status in EXECUTED]
        bugs = sum(len(sim.world.bugs_by_test[t.id]) for t in tests)

    async with stdio_server(server_env(home, tiny_server), "--no-worker") as client:
        before = await call(client, "get_sync_status")
        synced = await call(client, "sync_data", {"since": "3650 days ago"})
        full = await call(client, "sync_data", {})
        report = await call(client, "get_product_quality_report", {"product_ids": products})
        page = await call(client, "list_tests", {"product_ids": products[:1], "limit": 3})
        bad = await client.call_tool("get_product_quality_report", {"product_ids": [1]})
        unknown = await client.call_tool("get_test_summary", {"test_id": 1})

    assert before["worker_alive"] is False and before["last_sync_completed"] is None
    assert not worker_alive(home / "worker.lock")
    assert synced["status"] == full["status"] == "succeeded"
    assert report["total_tests"] == len(tests) and report["total_bugs"] == bugs
    assert [p["product_id"] for p in report["products"]] == products
    assert page["count"] == 3 and page["next_offset"] == 3
    assert bad.content[0].text == (
        "Error executing tool get_product_quality_report: Product(s) 1 not in the local "
        "mirror; list_products shows the mirrored products, sync_data fetches them."
    )
    assert bad.is_error and "\n" not in bad.content[0].text
    assert unknown.is_error and unknown.content[0].text == (
        "Error executing tool get_test_summary: Test 1 is in neither the mirror nor the API; "
        "list_tests shows the mirrored tests, sync_data fetches new ones."
    )


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if a failed test left it running, and close its stderr pipe."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.anyio
async def test_http_server_serves_on_localhost_and_sigterm_stops_it_and_its_worker(
    tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """``serve --transport http``: tools at /mcp on 127.0.0.1; SIGTERM also ends its worker."""
    home = tmp_path / "home"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_sync", "serve", "--transport", "http", "--port", str(port)],
        env={**os.environ, **server_env(home, tiny_server)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def listening() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        await wait_until(listening, 20)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            tools = (await client.list_tools()).tools
            status = await call(client, "get_sync_status")
        assert {"sync_data", "search", "get_bug_summary"} <= {t.name for t in tools}
        assert status["worker_alive"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        reap(proc)
    await wait_until(lambda: not worker_alive(home / "worker.lock"))


@pytest.mark.anyio
async def test_prompts_and_the_thresholds_resource_are_listed_and_render_over_stdio(
    tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """prompts/list, resources/list, prompts/get with arguments and resources/read, over stdio."""
    from testio_sync.insights.report import DEFAULT_THRESHOLDS

    async with stdio_server(server_env(tmp_path / "home", tiny_server), "--no-worker") as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        resources = (await client.list_resources()).resources
        analysis = await client.get_prompt(
            "analyze-product-quality",
            {"product": "117", "period": "2026-Q3", "focus": "rejection reasons"},
        )
        ebr = await client.get_prompt("prepare-ebr", {"product": "Web Shop", "period": "Q3"})
        thresholds = await client.read_resource("testio://health-thresholds")

    assert {
        name: [(a.name, a.required) for a in p.arguments or []] for name, p in prompts.items()
    } == {
        "analyze-product-quality": [("product", True), ("period", False), ("focus", False)],
        "prepare-ebr": [("product", True), ("period", False)],
    }
    assert [(r.name, str(r.uri)) for r in resources] == [
        ("health-thresholds", "testio://health-thresholds"),
        ("metrics", "testio://metrics"),
    ]
    text = analysis.messages[0].content.text
    assert "product 117 for 2026-Q3" in text and "attention to: rejection reasons" in text
    assert text.index("sync_data") < text.index("get_product_quality_report")
    assert "testio://health-thresholds" in text and len(text.split()) < 400
    assert "product Web Shop for Q3" in ebr.messages[0].content.text
    rates = json.loads(thresholds.contents[0].text)["rates"]
    assert rates["rejection_rate"] == {
        "label": "Rejection",
        "measures": "rejected bugs / all bugs",
        "bad_when": "high",
        "warning": DEFAULT_THRESHOLDS.rejection_warning,
        "critical": DEFAULT_THRESHOLDS.rejection_critical,
    }
    assert (rates["review_rate"]["bad_when"], rates["review_rate"]["critical"]) == ("low", 0.60)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_on_a_terminal_stops_on_ctrl_c_and_sigterm_and_its_worker_follows(
    signum: int, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """On a terminal the signal ends the server (exit 0), and its idle worker after it."""
    home = tmp_path / "home"
    controller, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_sync", "serve"],
        env={**os.environ, **server_env(home, tiny_server)},
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own terminal session, as a shell would give it
    )
    try:
        tty.setraw(terminal)
        answer_to_initialize(controller)  # it serves: its stdin reader waits on the terminal
        proc.send_signal(signum)
        code = proc.wait(20)  # it used to wait for a line of input that never came
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        reap(proc)
        os.close(controller)
        os.close(terminal)
    assert code == 0, stderr
    assert f"{signal.Signals(signum).name}: shutting down" in stderr
    anyio.run(wait_until, lambda: not worker_alive(home / "worker.lock"), 30)


def answer_to_initialize(terminal: int, timeout_s: float = 30) -> None:
    """Send ``initialize`` through the terminal and read until the server answers it."""
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LATEST_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "terminal", "version": "1"},
        },
    }
    os.write(terminal, (json.dumps(request) + "\n").encode())
    seen = b""
    while b"serverInfo" not in seen:
        ready, _, _ = select.select([terminal], [], [], timeout_s)
        assert ready, f"no answer to initialize: {seen!r}"
        seen += os.read(terminal, 65536)


def test_serve_http_on_a_taken_port_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "testio_sync", "serve", "--transport=http", f"--port={port}"],
            env={**os.environ, "TESTIO_SYNC_HOME": str(tmp_path / "home")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr == f"Error: Cannot listen on 127.0.0.1:{port}: Address already in use.\n"
    assert done.stdout == ""
