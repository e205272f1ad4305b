"""A data path that cannot hold a mirror (a file, under a file, read-only): one line, exit 2.

The commands run as real processes, so nothing imported early can turn the
problem into a traceback; ``status`` on a path with no mirror creates nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults

SCRIPT = Path(sys.executable).with_name("testio-sync")
COMMANDS = (
    ["status"],
    ["sync"],
    ["report", "--product-ids", "1"],
    ["restore", "--list"],
    ["worker"],
    ["serve"],
)


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.write_text("not a directory")
    return path


def under_a_file(tmp_path: Path) -> Path:
    return a_file(tmp_path) / "sub"


def read_only(tmp_path: Path) -> Path:
    """A path whose parent refuses new entries (``/sys`` when root ignores file modes)."""
    if os.geteuid() != 0:
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o500)
        return parent / "home"
    candidate = Path("/sys/testio-sync-home")
    try:
        candidate.mkdir()
    except OSError:
        return candidate
    candidate.rmdir()
    pytest.skip("no read-only location to test with as root")


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env |= {"TESTIO_SYNC_HOME": str(home), "TESTIO_CUSTOMER_API_TOKEN": "t"}
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("make_home", [a_file, under_a_file, read_only])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_unusable_data_path_is_one_line_and_exit_2(
    tmp_path: Path, make_home: Callable[[Path], Path], command: list[str]
) -> None:
    home = make_home(tmp_path)
    proc = run(home, *command)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("Error: ") and str(home) in proc.stderr
    assert proc.stdout == ""


def test_status_on_a_path_with_no_mirror_says_so_and_creates_nothing(tmp_path: Path) -> None:
    """A mistyped home is not an empty mirror: no ``0 products``, no new directory."""
    home = tmp_path / "mistyped"
    proc = run(home, "status")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"Error: no mirror in {home}")
    assert "0 products" not in proc.stdout
    assert not home.exists()
