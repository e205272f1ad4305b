"""``TESTIO_SYNC_DATABASE_URL``: a wrong or unreachable URL is one line, exit 2, no password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import testsupport
from store_servers import postgres_store
from typer.testing import CliRunner

from testio_sync.cli.app import app
from testio_sync.settings import Settings
from testio_sync.store import backend
from testio_sync.store.migrations import SCHEMA_VERSION
from testio_sync.store.postgres import close_postgres, open_postgres, schema_version

PASSWORD = "pw-3f9a1c77"

BAD_URLS = [
    # refused connection, wrong scheme, no database name, port not a number, unknown role
    (f"postgresql://bob:{PASSWORD}@127.0.0.1:1/mirror", "cannot use the database"),
    (f"mysql://bob:{PASSWORD}@127.0.0.1/mirror", "must be postgresql://"),
    (f"postgresql://bob:{PASSWORD}@127.0.0.1:5432", "must be postgresql://"),
    (f"postgresql://bob:{PASSWORD}@127.0.0.1:port/mirror", "is not a URL"),
    (f"postgresql://no_such_role_x:{PASSWORD}@127.0.0.1:5432/postgres", "cannot use the database"),
]


@pytest.mark.parametrize(("url", "says"), BAD_URLS)
@pytest.mark.parametrize("command", [["status"], ["sync"], ["report"]])
def test_a_bad_database_url_is_one_line_exit_2_without_its_password(
    tmp_path: Path, url: str, says: str, command: list[str]
) -> None:
    env = {
        "TESTIO_SYNC_HOME": str(tmp_path / "home"),
        "TESTIO_CUSTOMER_API_TOKEN": "t0k3n",
        "TESTIO_SYNC_DATABASE_URL": url,
    }
    result = CliRunner(env=env).invoke(app, command)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: TESTIO_SYNC_DATABASE_URL")
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert PASSWORD not in result.output
    assert "Traceback" not in result.output


def test_settings_carry_the_url_to_a_worker_and_never_print_it() -> None:
    url = f"postgresql://bob:{PASSWORD}@db.example:5432/mirror"
    settings = Settings.from_env({"TESTIO_SYNC_DATABASE_URL": url})
    assert settings.database_url is not None and settings.database_url.reveal() == url
    assert Settings.from_env(settings.to_env()).database_url == settings.database_url
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.store_label
    assert settings.store_label == "postgresql://bob:***@db.example:5432/mirror"


def test_processes_opening_a_new_database_at_once_migrate_it_once() -> None:
    """Each version is applied under an advisory lock: four racing processes agree."""
    with postgres_store() as url:
        code = (
            "import sys; from testio_sync.store.postgres import open_postgres;"
            "open_postgres(sys.argv[1]); print('ok')"
        )
        procs = [
            subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, outputs
        db = open_postgres(url)
        with db.connection_context():
            assert schema_version(db) == SCHEMA_VERSION
            assert backend.is_postgres(db)
        close_postgres(url)


def test_a_postgresql_url_is_used_by_the_settings_the_tests_build(store_backend: str) -> None:
    settings = testsupport.make_settings(Path("/nonexistent"), "http://127.0.0.1:1")
    assert (settings.database_url is not None) == (store_backend == "postgresql")
