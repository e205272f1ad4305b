"""A failed sync says what failed, once, with the host and the cause; no zeros, no false phases."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from testsupport import TOKEN, make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.cli import support as cli_support
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator


@pytest.fixture
def closed_url() -> str:
    """A base URL on a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/customer/v2"


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, ["sync", *args])


def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_support, "load_settings", lambda: Settings.from_env(max_retries=0))


def test_a_run_in_which_every_call_failed_names_host_and_cause_once(
    home: Path, closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_retries(monkeypatch)
    settings = make_settings(home, closed_url)
    result = invoke(settings)
    assert result.exit_code == 1, result.output
    host = closed_url.split("/")[2]
    lines = result.stdout.splitlines()
    summary = lines[next(i for i, line in enumerate(lines) if line.startswith("Run ")) :]
    assert summary[1:-1] == [
        "Errors (1):",
        f"  - Product list: Cannot reach the TestIO API at {host} for products "
        "(ConnectError: all connection attempts failed; 1 attempt)",
    ]
    assert "completed" not in summary[0]  # no phase completed: none is named
    assert summary[-1].startswith("Sync failed after ")


def test_with_products_stored_an_unreachable_api_claims_no_completed_phase(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``(products, features, new_tests completed)`` and the list error twice."""
    sim = Simulator(scale="tiny", seed=4, token=TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as server:
        settings = make_settings(home, server.base_url)
        assert invoke(settings).exit_code == 0
    no_retries(monkeypatch)  # the server is gone: every call fails
    result = invoke(settings, "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    assert data["phases_completed"] == []
    assert len(data["errors"]) == len(set(data["errors"])), data["errors"]
    assert all(" times" not in error for error in data["errors"])
