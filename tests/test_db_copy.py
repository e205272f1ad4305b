"""``testio-sync db copy``: a synced simulator mirror from SQLite to PostgreSQL and back.

Counts are checked against the simulator's own data, the rows of every copied
table against the original file's, and the copies are used afterwards (search,
query, another sync) to show they are whole mirrors, not just rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_servers import postgres_store
from testsupport import make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.settings import Secret, Settings
from testio_sync.simulator import Simulator
from testio_sync.store.copy import COLUMNS, COPIED_TABLES, parse_store
from testio_sync.store.db import open_store
from testio_sync.store.migrations import SCHEMA_VERSION
from testio_sync.store.models import database

ENTITIES = ("products", "features", "tests", "bugs", "users")
PASSWORD = "s3cret-pw"


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args))


def on_postgres(settings: Settings, url: str) -> Settings:
    return make_settings(settings.home, settings.api_base_url, database_url=Secret(url))


def with_password(url: str) -> str:
    """The test server trusts every user: a password in the URL is accepted and ignored."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def file_rows(path: Path, table: str) -> list[tuple]:
    """Every row of ``table`` in a SQLite file, in key order, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        order = '"key"' if table == "sync_metadata" else '"id"'
        names = ", ".join(f'"{c}"' for c in COLUMNS[table])
        return conn.execute(f'SELECT {names} FROM "{table}" ORDER BY {order}').fetchall()
    finally:
        conn.close()


def sql_rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def pg_indexes(url: str) -> set[str]:
    """The PostgreSQL mirror's indexes other than primary keys; its device trigger is on."""
    import psycopg

    with psycopg.connect(url) as conn:
        [(enabled,)] = conn.execute(
            "SELECT tgenabled FROM pg_trigger WHERE tgname = 'bugs_devices'"
            " AND tgrelid = 'bugs'::regclass"
        ).fetchall()
        assert enabled == "O"
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname NOT LIKE '%%_pkey'"
        ).fetchall()
    return {name for (name,) in rows}


def copied(result: Result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output
    return {row["table"]: row for row in json.loads(result.stdout)["tables"]}


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_store() as url:
        yield url


@pytest.fixture
def mirror(settings: Settings) -> Settings:
    """A SQLite mirror of the tiny simulator, synced with bugs."""
    result = invoke(settings, "sync", "--with-bugs", "--quiet")
    assert result.exit_code == 0, result.output
    return settings


def test_a_mirror_goes_to_postgresql_and_back_whole(
    mirror: Settings, pg_url: str, tiny_server: tuple[Simulator, str], tmp_path: Path
) -> None:
    truth = tiny_server[0].truth()
    to_pg = copied(invoke(mirror, "db", "copy", "--to", with_password(pg_url), "--json"))
    assert {t: to_pg[t]["target"] for t in ENTITIES} == {t: truth[t] for t in ENTITIES}
    assert all(row["ok"] for row in to_pg.values())
    assert to_pg["sync_events"]["target"] == 1 and to_pg["bug_devices"]["target"] > truth["bugs"]
    assert to_pg["search_docs"]["target"] == sum(
        truth[t] for t in ("products", "features", "tests", "bugs")
    )

    back_home = tmp_path / "back"
    back = make_settings(back_home, mirror.api_base_url)
    pg = on_postgres(mirror, pg_url)
    to_file = copied(invoke(pg, "db", "copy", "--to", str(back.db_path), "--json"))
    assert {t: row["target"] for t, row in to_file.items()} == {
        t: row["target"] for t, row in to_pg.items()
    }
    for table in COPIED_TABLES:  # every column of the schema is copied
        info = sql_rows(mirror.db_path, f'PRAGMA table_info("{table}")')
        assert {row[1] for row in info} == set(COLUMNS[table]), table
    for table in COPIED_TABLES:  # the same rows, value for value, after two engines
        assert file_rows(back.db_path, table) == file_rows(mirror.db_path, table), table
    devices = "SELECT * FROM bug_devices ORDER BY bug_id, position, browser"
    assert sql_rows(back.db_path, devices) == sql_rows(mirror.db_path, devices)
    schema = "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
    assert sql_rows(back.db_path, schema) == sql_rows(mirror.db_path, schema)
    assert sql_rows(back.db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    indexes = {name for _, name, sql in sql_rows(mirror.db_path, schema) if sql and _ == "index"}
    assert pg_indexes(pg_url) == indexes | {"search_docs_words"}  # all rebuilt after the load
    assert oct(back.db_path.stat().st_mode & 0o777) == "0o600"

    for copy in (pg, back):  # the search index of each copy matches its rows
        checked = invoke(copy, "status", "--check")
        assert checked.exit_code == 0, checked.output

    # The copy is a mirror: search and analytics answer as on the original.
    for args in (
        ("search", "login", "--json"),
        ("query", "--metric", "bug_count", "--by", "platform", "--json"),
        ("report", "--json"),
    ):
        original, again = invoke(mirror, *args), invoke(back, *args)
        assert original.exit_code == 0, original.output
        assert again.stdout == original.stdout


def test_the_postgresql_copy_is_a_working_mirror(
    mirror: Settings, pg_url: str, tiny_server: tuple[Simulator, str]
) -> None:
    """Status names it without a password; a sync of the same account goes on there (the
    account's fingerprint came along), and new runs and users get fresh ids."""
    assert invoke(mirror, "db", "copy", "--to", pg_url, "--quiet").exit_code == 0
    pg = make_settings(mirror.home, mirror.api_base_url, database_url=Secret(with_password(pg_url)))
    status = invoke(pg, "status", "--json")
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert data["database"] == pg.store_label and PASSWORD not in status.stdout
    assert data["database_bytes"] > 0
    truth = tiny_server[0].truth()
    assert data["counts"] == {t: truth[t] for t in ENTITIES}

    open_store(pg)
    (top,) = database.execute_sql("SELECT MAX(id) FROM users").fetchone()
    (user_id,) = database.execute_sql(
        "INSERT INTO users (kind, name, first_seen_at, last_seen_at)"
        " VALUES ('tester', 'someone new', 'x', 'x') RETURNING id"
    ).fetchone()
    assert user_id == top + 1  # the identity goes on after the copied ids
    synced = invoke(pg, "sync", "--with-bugs", "--quiet")
    assert synced.exit_code == 0, synced.output
    runs = database.execute_sql("SELECT id, status FROM sync_events ORDER BY id").fetchall()
    assert [status for _, status in runs] == ["succeeded", "succeeded"]
    assert runs[1][0] == runs[0][0] + 1


def test_a_target_that_holds_a_mirror_is_refused_unless_replace(
    mirror: Settings, pg_url: str, tmp_path: Path
) -> None:
    assert invoke(mirror, "db", "copy", "--to", with_password(pg_url), "-q").exit_code == 0
    again = invoke(mirror, "db", "copy", "--to", with_password(pg_url))
    assert again.exit_code == 2
    assert again.stderr.count("\n") == 1 and "already holds mirrored data" in again.stderr
    assert "--replace" in again.stderr and PASSWORD not in again.stderr
    assert invoke(mirror, "db", "copy", "--to", pg_url, "--replace", "-q").exit_code == 0

    file = tmp_path / "copy.db"
    assert invoke(mirror, "db", "copy", "--to", str(file), "-q").exit_code == 0
    size = file.stat().st_size
    refused = invoke(mirror, "db", "copy", "--to", str(file))
    assert refused.exit_code == 2 and "already holds mirrored data" in refused.stderr
    assert file.stat().st_size == size
    self_copy = invoke(mirror, "db", "copy", "--to", str(mirror.db_path))
    assert self_copy.exit_code == 2 and "is the mirror being copied" in self_copy.stderr


def test_a_run_going_on_at_the_source_is_copied_as_abandoned(
    mirror: Settings, tmp_path: Path
) -> None:
    conn = sqlite3.connect(mirror.db_path)
    with conn:
        conn.execute("UPDATE sync_events SET status = 'running', finished_at = NULL")
    conn.close()
    result = invoke(mirror, "db", "copy", "--to", str(tmp_path / "c.db"))
    assert result.exit_code == 0, result.output
    assert "1 run(s) were going on at the source" in result.stdout
    [(status, error)] = sqlite3.connect(tmp_path / "c.db").execute(
        "SELECT status, error FROM sync_events"
    )
    assert status == "abandoned" and "copied while this run was going on" in error


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", "cannot use the database at"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:99999/db", "not a valid URL"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1", "must name a host and a database"),
        (f"mysql://u:{PASSWORD}@127.0.0.1/db", "a postgresql:// URL or a .db file"),
        ("backup.sqlite", "ends in .db"),
    ],
)
def test_a_bad_target_is_one_line_without_its_password(
    mirror: Settings, target: str, says: str
) -> None:
    result = invoke(mirror, "db", "copy", "--to", target)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: --to: ") and result.stderr.count("\n") == 1
    assert says in result.stderr and PASSWORD not in result.output
    assert "Traceback" not in result.output


def test_no_mirror_to_copy_is_said(settings: Settings, tmp_path: Path) -> None:
    result = invoke(settings, "db", "copy", "--to", str(tmp_path / "x.db"))
    assert result.exit_code == 2 and "no mirror in" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_parse_store_reads_urls_and_paths() -> None:
    assert parse_store("postgres://h/db").url == "postgres://h/db"
    assert parse_store("~/m.db").path == Path("~/m.db").expanduser()
    assert parse_store(f"postgresql://u:{PASSWORD}@h/db").label == "postgresql://u:***@h/db"


def test_a_copy_that_fails_midway_leaves_the_target_as_it_was(
    mirror: Settings, pg_url: str, tiny_server: tuple[Simulator, str]
) -> None:
    """A bug whose test is missing breaks PostgreSQL's foreign key after thousands of rows:
    the target keeps its mirror, its device trigger and its indexes."""
    assert invoke(mirror, "db", "copy", "--to", pg_url, "-q").exit_code == 0
    indexes = pg_indexes(pg_url)
    conn = sqlite3.connect(mirror.db_path)
    with conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("UPDATE bugs SET test_id = 999999999 WHERE id = (SELECT MAX(id) FROM bugs)")
    conn.close()
    failed = invoke(mirror, "db", "copy", "--to", with_password(pg_url), "--replace", "-q")
    assert failed.exit_code == 1, failed.output
    assert failed.stderr.count("\n") == 1 and "nothing was kept" in failed.stderr
    assert PASSWORD not in failed.stderr
    assert pg_indexes(pg_url) == indexes
    truth = tiny_server[0].truth()
    status = json.loads(invoke(on_postgres(mirror, pg_url), "status", "--json").stdout)
    assert status["counts"] == {t: truth[t] for t in ENTITIES}
