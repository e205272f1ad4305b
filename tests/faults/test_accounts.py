"""A mirror holds one account's data: a worker and a caller with different accounts never mix.

The account is the base URL and a keyed fingerprint of the token; the mirror records
it after the first run the API accepted, and never the token itself.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from mcp import Client
from testsupport import TOKEN, make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.mcp_server import build_server
from testio_sync.settings import Secret, Settings
from testio_sync.simulator import Simulator

from .support import connect_readonly, ids_in

pytestmark = pytest.mark.faults

OTHER_TOKEN = "another-token-9876543210"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, ["sync", "--json", *args])


def run_rows(path: Path) -> int:
    conn = connect_readonly(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM sync_events").fetchone()[0])
    finally:
        conn.close()


def dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


@pytest.mark.parametrize("differs", ["token", "base_url"])
def test_a_worker_never_runs_a_sync_asked_for_by_another_account(
    settings: Settings, tiny_server: tuple[Simulator, str], worker_pool, differs: str
) -> None:
    """Before: ``TESTIO_CUSTOMER_API_TOKEN=wrong testio-sync sync`` succeeded on the worker."""
    settings = replace(settings, refresh_interval_s=0)  # no background sync of its own
    worker_pool(settings).start()
    if differs == "token":
        caller = replace(settings, api_token=Secret(OTHER_TOKEN))
    else:
        caller = replace(settings, api_base_url=tiny_server[1].replace("127.0.0.1", "localhost"))
    result = invoke(caller)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    assert len(data["errors"]) == 1 and data["errors"][0].startswith("The worker syncs ")
    assert ids_in(settings.db_path)["products"] == set()  # nothing was written

    first = invoke(settings)  # the worker's own account: synced, and recorded
    assert first.exit_code == 0, first.output
    again = invoke(caller)  # now refused before anything is enqueued
    assert again.exit_code == 2, again.output
    assert again.stderr.startswith("Error: This mirror holds the data of ")
    assert len(again.stderr.strip().splitlines()) == 1


def test_a_cli_in_process_and_an_mcp_server_are_refused_another_accounts_mirror(
    home: Path, tiny_server: tuple[Simulator, str]
) -> None:
    """No worker: the refusal happens before a run is recorded, whoever asks."""
    sim = Simulator(scale="tiny", seed=5, token=OTHER_TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as other:
        mine = make_settings(home, tiny_server[1])
        assert invoke(mine).exit_code == 0
        before = run_rows(mine.db_path)
        theirs = make_settings(home, other.base_url, api_token=Secret(OTHER_TOKEN))
        result = invoke(theirs)
        assert result.exit_code == 2, result.output
        assert "holds the data of" in result.stderr
        assert run_rows(mine.db_path) == before

        async def mcp_sync() -> str:
            async with Client(build_server(theirs)) as client:
                answer = await client.call_tool("sync_data", {})
            assert answer.is_error
            return answer.content[0].text

        text = anyio.run(mcp_sync)
        assert "holds the data of" in text
        assert run_rows(mine.db_path) == before


def test_the_recorded_account_holds_no_token_and_no_plain_hash_of_it(
    settings: Settings,
) -> None:
    assert invoke(settings).exit_code == 0
    conn = connect_readonly(settings.db_path)
    try:
        row = conn.execute("SELECT value FROM sync_metadata WHERE key = 'account'").fetchone()
    finally:
        conn.close()
    account = json.loads(row[0])
    assert account["base_url"] == settings.api_base_url
    assert len(account["token"]) == 64  # an HMAC-SHA256, keyed by this mirror's own key
    assert account["token"] != hashlib.sha256(TOKEN.encode()).hexdigest()
    text = dump(settings.db_path)
    assert TOKEN not in text
    assert hashlib.sha256(TOKEN.encode()).hexdigest() not in text
