"""``testio-sync report`` and ``testio-sync demo`` through typer's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.cli.demo import MARKER, prepare_demo_dir
from testio_sync.dates import human_time
from testio_sync.settings import Settings


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args))


def synced(settings: Settings) -> None:
    result = invoke(settings, "sync", "--with-bugs", "--quiet")
    assert result.exit_code == 0, result.output


def test_report_prints_the_quality_report_of_the_stored_data(settings, tiny_server):
    sim, _ = tiny_server
    synced(settings)
    pid = sorted(sim.world.products)[0]
    result = invoke(settings, "report", "--product-ids", str(pid), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    executed = {"running", "locked", "archived", "customer_finalized"}
    tests = [t for t in sim.world.tests.values() if t.product_id == pid and t.status in executed]
    assert data["total_tests"] == len(tests)
    ids = {t.id for t in tests}
    assert data["total_bugs"] == sum(1 for b in sim.world.bugs.values() if b.test_id in ids)
    text = invoke(settings, "report", "-p", str(pid))
    assert text.exit_code == 0
    assert f"Quality report for {sim.world.products[pid].name} ({pid})" in text.stdout
    as_of = human_time(data["data_as_of"])  # the JSON's ISO time, as people read times
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", as_of)
    assert f"Data as of {as_of}" in text.stdout
    assert "Rejection" in text.stdout and "health" in text.stdout


def test_report_refuses_bad_input_with_one_line_and_exit_2(settings, tiny_server):
    synced(settings)
    for args in (["-p", "abc"], ["-p", "999999"], ["-p", "1", "--start-date", "31/02/2026"]):
        result = invoke(settings, "report", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "Traceback" not in result.output


def test_demo_runs_end_to_end_in_its_own_directory(settings, tmp_path: Path):
    """Syncs twice through a real worker, reports, shows the status, exits 0."""
    demo_dir = tmp_path / "demo"
    result = invoke(settings, "demo", "--dir", str(demo_dir), "--scale", "tiny")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("1. Full sync", "2. A day passes", "3. Product quality report", "4. Status"):
        assert heading in out
    assert out.count("Sync completed in") == 2
    assert (demo_dir / "cache.db").is_file()
    assert not settings.db_path.exists()  # the user's data directory was not touched
    assert "Worker and simulator stopped." in out


def test_demo_refuses_a_folder_it_did_not_make_and_leaves_its_files(settings, tmp_path: Path):
    """A user's folder with a file in it: exit 2, one line, the file is still there."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    result = invoke(settings, "demo", "--dir", str(folder), "--scale", "tiny")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: --dir ") and result.stderr.count("\n") == 1
    assert (folder / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert invoke(settings, "demo", "--dir", str(a_file)).exit_code == 2
    assert a_file.read_text() == "x"


def test_demo_empties_only_a_former_demo_folder(tmp_path: Path):
    """A new folder, an empty one and a marked one are prepared; the marker stays."""
    for folder in (tmp_path / "new", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        prepare_demo_dir(folder)
        assert sorted(p.name for p in folder.iterdir()) == [MARKER]
    former = tmp_path / "new"
    (former / "cache.db").write_bytes(b"old demo data")
    prepare_demo_dir(former)
    assert sorted(p.name for p in former.iterdir()) == [MARKER]
