"""Settings the CLI cannot use are setting errors: one line naming the variable, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from testio_sync import cli
from testio_sync.settings import Settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TESTIO_CUSTOMER_API_TOKEN", "tökén-0123456789"),
        ("TESTIO_HTTP_TIMEOUT_SECONDS", "nan"),
    ],
)
def test_a_setting_no_request_could_use_is_refused_before_any_run(
    settings: Settings, name: str, value: str
) -> None:
    """Not "Internal error: UnicodeEncodeError / ValueError" after a run was recorded."""
    result = CliRunner(env={**settings.to_env(), name: value}).invoke(cli.app, ["sync"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {name} ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "TOKEN" not in name or value not in result.stderr  # a token is never echoed
    assert not settings.db_path.exists()
