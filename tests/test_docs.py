"""The README is tested like code: its commands exist, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from testio_sync import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    return sorted(c.name or c.callback.__name__ for c in cli.app.registered_commands)


def test_every_command_is_in_the_readme_and_its_help_ends_with_an_example():
    for name in _commands():
        assert f"testio-sync {name}" in README, name
        result = CliRunner().invoke(cli.app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Example:" in result.stdout, name


def test_the_readme_opens_with_the_demo_and_the_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert "testio-sync demo" in blocks[0]
    assert "pytest" in blocks[1]


def test_ci_runs_the_readmes_test_command():
    test_command = re.findall(r"```bash\n(.*?)\n```", README, re.S)[1]
    install_and_test = test_command.split("&& ", 3)[-1]
    assert install_and_test in (ROOT / ".ci" / "run").read_text()


def test_the_exit_codes_in_the_readme_match_the_cli():
    from testio_sync.cli import support as s

    for code in (s.EXIT_OK, s.EXIT_FAILED, s.EXIT_USAGE, s.EXIT_PARTIAL, s.EXIT_LOCKED):
        assert f"**{code}**" in README
