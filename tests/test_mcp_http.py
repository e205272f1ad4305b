"""``serve --transport http`` for a team: bearer tokens, allowed hosts and origins, stateless.

The servers are real ``python -m testio_sync serve`` processes on 127.0.0.2: a loopback
address (nothing leaves the machine) that is not one of the three the MCP SDK guards
by default, so the server treats it as any other network address and needs tokens.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from testsupport import server_env

from testio_sync.mcp_server import build_server
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator

HOST = "127.0.0.2"
SERVE = [sys.executable, "-m", "testio_sync", "serve", "--transport", "http"]
ENV_TOKEN = "env-token-" + "a" * 24  # given in TESTIO_SYNC_SERVER_TOKENS
FILE_TOKEN = "file-token-" + "b" * 24  # only its digest is on disk
WRONG_TOKEN = "env-token-" + "a" * 23 + "c"  # one character off
ORIGIN = "https://team.example"
UNAUTHORIZED = {"error": "invalid_token", "error_description": "Authentication required"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port(host: str = HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def run_cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testio_sync", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class HttpServer:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(env: dict[str, str], log: Path, host: str = HOST, *flags: str) -> HttpServer:
    """A server process, returned once it listens; its stderr goes to ``log``."""
    port = free_port(host)
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*SERVE, "--host", host, "--port", str(port), *flags],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    server = HttpServer(proc, host, port, log)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return server
        assert time.monotonic() < deadline, "the server did not listen within 30 s"
        time.sleep(0.05)


def base_env(home: Path, sim_server: tuple[Simulator, str]) -> dict[str, str]:
    """A server's variables, with none of the access ones inherited from the caller."""
    return {
        **server_env(home, sim_server),
        "TESTIO_SYNC_SERVER_TOKENS": "",
        "TESTIO_SYNC_SERVER_TOKENS_FILE": "",
        "TESTIO_SYNC_ALLOWED_HOSTS": "",
        "TESTIO_SYNC_ALLOWED_ORIGINS": "",
    }


@dataclass
class Team:
    servers: list[HttpServer]
    home: Path


@pytest.fixture(scope="module")
def team(
    tiny_server: tuple[Simulator, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    """Two token-checking servers on 127.0.0.2 over one mirror, without a worker."""
    base = tmp_path_factory.mktemp("team")
    made = run_cli("serve", "--hash-token", env={}, stdin=FILE_TOKEN + "\n")
    assert made.returncode == 0, made.stderr
    tokens = base / "tokens.txt"
    tokens.write_text(f"# the file token\n{made.stdout}\n")
    env = {
        **base_env(base / "home", tiny_server),
        "TESTIO_SYNC_SERVER_TOKENS": ENV_TOKEN,
        "TESTIO_SYNC_SERVER_TOKENS_FILE": str(tokens),
        "TESTIO_SYNC_ALLOWED_HOSTS": HOST,
        "TESTIO_SYNC_ALLOWED_ORIGINS": ORIGIN,
    }
    servers: list[HttpServer] = []
    try:
        for n in range(2):
            servers.append(start_server(env, base / f"server{n}.log", HOST, "--no-worker"))
        yield Team(servers, base / "home")
    finally:
        for server in servers:
            server.stop()


def post(url: str, token: str | None = None, **headers: str) -> httpx.Response:
    """One JSON-RPC initialize POST, as a client without the SDK would send it."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers |= {"Accept": "application/json, text/event-stream"}
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=30)


class RoundRobin(httpx2.AsyncHTTPTransport):
    """A load balancer in miniature: each request goes to the next port in turn."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__()
        self.ports = ports
        self.hits: list[int] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[len(self.hits) % len(self.ports)]
        self.hits.append(port)
        request.url = request.url.copy_with(port=port)
        return await super().handle_async_request(request)


@asynccontextmanager
async def mcp_client(
    url: str, token: str, transport: httpx2.AsyncBaseTransport | None = None
) -> AsyncIterator[Client]:
    """A real MCP client over streamable HTTP that sends ``token`` on every request."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx2.Timeout(30, read=120)
    http = httpx2.AsyncClient(headers=headers, timeout=timeout, transport=transport)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def in_process_tools(home: Path) -> set[str]:
    """What the server offers, asked in process: the HTTP answers must match it."""
    async with Client(build_server(Settings(home=home))) as client:
        return await tool_names(client)


async def call(client: Client, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
    result = await client.call_tool(tool, args or {}, **kw)
    assert not result.is_error, result.content[0].text
    return result.structured_content


# -- refusing to start -------------------------------------------------------------------


@pytest.mark.parametrize("host", [HOST, "0.0.0.0", "192.0.2.10"])
def test_a_non_default_address_without_tokens_refuses_to_start(
    host: str, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """No token configured: one line naming the variables, exit 2, nothing listens."""
    done = run_cli(
        "serve", "--transport", "http", "--host", host, env=base_env(tmp_path, tiny_server)
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"Error: serving on {host} needs authentication: set TESTIO_SYNC_SERVER_TOKENS or "
        "TESTIO_SYNC_SERVER_TOKENS_FILE (only 127.0.0.1, localhost, ::1 serve without tokens)\n"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot be read: no such file or directory"),
        ("sha256:abc\n", "line 1 is not sha256:<64 hex digits>"),
        ("# only a comment\n", "holds no token line"),
    ],
)
def test_an_unusable_tokens_file_is_one_line_and_exit_2(
    content: str | None, reason: str, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.txt"
    if content is not None:
        tokens.write_text(content)
    env = {**base_env(tmp_path, tiny_server), "TESTIO_SYNC_SERVER_TOKENS_FILE": str(tokens)}
    done = run_cli("serve", "--transport", "http", "--host", HOST, env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"TESTIO_SYNC_SERVER_TOKENS_FILE {tokens}" in done.stderr and reason in done.stderr


def test_a_short_server_token_is_refused_without_being_shown(
    tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    env = {**base_env(tmp_path, tiny_server), "TESTIO_SYNC_SERVER_TOKENS": f"{ENV_TOKEN}, tiny1"}
    done = run_cli("serve", "--transport", "http", "--host", HOST, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(
        "Error: TESTIO_SYNC_SERVER_TOKENS (token 2) is shorter than 16 characters"
    )
    assert "tiny1" not in done.stderr and ENV_TOKEN not in done.stderr


def test_hash_token_prints_the_sha256_line_of_the_token_on_stdin() -> None:
    done = run_cli("serve", "--hash-token", env={}, stdin=FILE_TOKEN + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sha256:" + hashlib.sha256(FILE_TOKEN.encode()).hexdigest() + "\n"
    assert FILE_TOKEN not in done.stdout + done.stderr
    short = run_cli("serve", "--hash-token", env={}, stdin="short\n")
    assert short.returncode == 2 and short.stdout == ""
    assert "shorter than 16 characters" in short.stderr and "short\n" not in short.stderr
    empty = run_cli("serve", "--hash-token", env={}, stdin="")
    assert empty.returncode == 2 and empty.stderr.startswith("Error: no token on stdin")


# -- every request proves a token --------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, f"Bearer {WRONG_TOKEN}", "Bearer  x", f"Basic {ENV_TOKEN}"]
)
def test_a_request_without_a_known_token_gets_401_and_no_data(
    team: Team, authorization: str | None
) -> None:
    """No token, a wrong one, an empty one, another scheme: the same 401 body, nothing else."""
    headers = {"Authorization": authorization} if authorization else {}
    answer = post(team.servers[0].url, **headers)
    assert answer.status_code == 401
    assert answer.json() == UNAUTHORIZED
    assert answer.headers["www-authenticate"].startswith("Bearer ")
    assert "testio" not in answer.text


@pytest.mark.parametrize("token", [ENV_TOKEN, FILE_TOKEN])
def test_a_token_from_the_variable_or_the_file_is_accepted(team: Team, token: str) -> None:
    answer = post(team.servers[1].url, token)
    assert answer.status_code == 200, answer.text
    assert "testio-sync" in answer.text  # the server's name, in the initialize result


def test_wrong_host_is_421_and_foreign_origin_403_even_with_a_token(team: Team) -> None:
    """TESTIO_SYNC_ALLOWED_HOSTS / _ORIGINS decide which names and pages may call."""
    url = team.servers[0].url
    assert post(url, ENV_TOKEN, Host="evil.example").status_code == 421
    assert post(url, ENV_TOKEN, Origin="https://evil.example").status_code == 403
    assert post(url, ENV_TOKEN, Origin=ORIGIN).status_code == 200
    assert post(url, None, Host="evil.example").status_code == 401  # the token comes first


@pytest.mark.anyio
async def test_an_mcp_client_with_the_token_syncs_and_lists_products_as_the_simulator_has_them(
    team: Team, tiny_server: tuple[Simulator, str]
) -> None:
    """A real ``mcp.Client`` over streamable HTTP; the sync's progress still arrives."""
    truth = tiny_server[0].truth()
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with mcp_client(team.servers[0].url, ENV_TOKEN) as client:
        tools = await tool_names(client)
        synced = await call(client, "sync_data", {}, progress_callback=on_progress)
        listed = await call(client, "list_products")

    assert tools == await in_process_tools(team.home) and "list_products" in tools
    assert synced["status"] == "succeeded"
    assert progress and progress[-1] == 100
    assert {p["id"]: p["test_count"] for p in listed["products"]} == {
        int(pid): row["tests"] for pid, row in truth["per_product"].items()
    }


@pytest.mark.anyio
async def test_two_servers_answer_one_client_in_turn(
    team: Team, tiny_server: tuple[Simulator, str]
) -> None:
    """Stateless: a client whose requests alternate between two servers keeps working."""
    balancer = RoundRobin([server.port for server in team.servers])
    async with mcp_client(team.servers[0].url, FILE_TOKEN, balancer) as client:
        tools = await tool_names(client)
        first = await call(client, "list_products")
        second = await call(client, "list_products")
        status = await call(client, "get_sync_status")

    assert set(balancer.hits) == {server.port for server in team.servers}
    assert len(balancer.hits) >= 4
    assert tools == await in_process_tools(team.home)
    assert first["products"] == second["products"]
    assert len(first["products"]) == tiny_server[0].truth()["products"]
    assert status["worker_alive"] is False  # --no-worker: none was started


# -- the loopback default and --no-worker ------------------------------------------------


@pytest.mark.anyio
async def test_the_loopback_default_needs_no_token_and_keeps_its_host_checks(
    tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    server = start_server(base_env(tmp_path / "home", tiny_server), tmp_path / "log", "127.0.0.1")
    try:
        assert post(server.url).status_code == 200
        assert post(server.url, Host="evil.example").status_code == 421
        assert post(server.url, Origin="https://evil.example").status_code == 403
        async with Client(server.url) as client:
            assert await tool_names(client) == await in_process_tools(tmp_path / "home")
    finally:
        server.stop()


@pytest.mark.anyio
async def test_a_no_worker_server_enqueues_syncs_for_the_running_worker(
    settings: Settings, consumer: object, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    """The run is the worker's (this process's consumer), not the server's."""
    env = {**base_env(settings.home, tiny_server), "TESTIO_SYNC_SERVER_TOKENS": ENV_TOKEN}
    server = start_server(env, tmp_path / "log", HOST, "--no-worker")
    try:
        async with mcp_client(server.url, ENV_TOKEN) as client:
            synced = await call(client, "sync_data", {})
            status = await call(client, "get_sync_status")
    finally:
        server.stop()
    assert synced["status"] == "succeeded"
    assert status["worker_alive"] is True
    with sqlite3.connect(settings.db_path) as db:
        owner, in_process = db.execute(
            "SELECT owner_pid, in_process FROM sync_events WHERE run_id = ?", (synced["run_id"],)
        ).fetchone()
    assert (owner, in_process) == (os.getpid(), 0)
    assert server.proc.pid != os.getpid()


# -- secrets -----------------------------------------------------------------------------


def test_no_server_token_ever_reaches_the_logs(team: Team) -> None:
    """After accepted and refused requests, the servers' stderr holds no token."""
    for server in team.servers:
        post(server.url, ENV_TOKEN)
        post(server.url, WRONG_TOKEN)
        post(server.url, FILE_TOKEN, Host="evil.example")
    logs = "".join(server.log.read_text() for server in team.servers)
    assert "Invalid Host header: evil.example" in logs  # the requests were logged about
    for token in (ENV_TOKEN, FILE_TOKEN, WRONG_TOKEN):
        assert token not in logs
        assert token[-12:] not in logs
