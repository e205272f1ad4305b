"""Answers that look like mass deletions: an empty product list, empty test pages, a
shrunken list. None may wipe the mirror; a real removal waits for ``--force``.

After each case the store equals the data from before (refused) or the
simulator's truth (confirmed), and the run's status says which.
"""

from __future__ import annotations

from typing import Any

import pytest
from testsupport import drop_products, make_settings
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.backups import describe, list_backups

from .support import differences, expected_ids, ids_in, store_problems

pytestmark = pytest.mark.faults

ROWS = ("products", "features", "tests", "bugs")  # users stay when products go


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args))


def rows(found: dict[str, set[Any]]) -> dict[str, set[Any]]:
    return {kind: found[kind] for kind in ROWS}


def synced(settings: Settings, sim: Simulator) -> dict[str, set[Any]]:
    """Arrange: a full sync with bugs that equals the truth; returns the store's ids."""
    result = invoke(settings, "sync", "--with-bugs", "--quiet")
    assert result.exit_code == 0, result.output
    found = ids_in(settings.db_path)
    assert differences(found, expected_ids(sim)) == {}
    return found


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("empty_product_list", "Product list: the API listed no products"),
        ("empty_test_pages", "the API listed no tests"),
    ],
)
def test_an_empty_list_removes_nothing_even_when_forced(
    fresh_server: tuple[Simulator, str], home, fault: str, says: str
) -> None:
    """200 with ``[]``: exit 3 (partial) with the reason, the store as before, no backup."""
    sim, url = fresh_server
    settings = make_settings(home, url)
    before = synced(settings, sim)
    sim.update_faults(**{fault: True})
    for flags in ((), ("--force",)):
        result = invoke(settings, "sync", "--with-bugs", *flags)
        assert result.exit_code == 3, result.output
        assert says in result.stdout
        assert "Sync finished with errors in " in result.stdout  # partial, not succeeded
        assert ids_in(settings.db_path) == before
    assert list_backups(settings.backups_dir) == []
    assert store_problems(settings.db_path) == []
    sim.clear_faults()
    assert invoke(settings, "sync", "--with-bugs", "--quiet").exit_code == 0
    assert differences(ids_in(settings.db_path), expected_ids(sim)) == {}


def test_removing_most_products_waits_for_force_and_backs_up_first(
    fresh_server: tuple[Simulator, str], home
) -> None:
    """2 of 3 products gone upstream: refused (exit 3, nothing removed); ``--force`` removes
    them after a backup that holds the data from before."""
    sim, url = fresh_server
    settings = make_settings(home, url)
    before = synced(settings, sim)
    drop_products(sim, sorted(sim.world.products)[1:])
    refused = invoke(settings, "sync")
    assert refused.exit_code == 3, refused.output
    assert "2 of 3 stored products are no longer listed upstream" in refused.stdout
    assert "`testio-sync sync --force`" in refused.stdout
    assert rows(ids_in(settings.db_path)) == rows(before)
    assert list_backups(settings.backups_dir) == []
    confirmed = invoke(settings, "sync", "--force")
    assert confirmed.exit_code == 0, confirmed.output
    assert differences(rows(ids_in(settings.db_path)), rows(expected_ids(sim))) == {}
    [backup] = list_backups(settings.backups_dir)
    assert "before-removal" in backup.name and f"(the data before is in {backup})" in (
        confirmed.stdout
    )
    assert describe(backup).counts["products"] == len(before["products"])


def test_removing_most_of_a_products_tests_waits_for_force(
    fresh_server: tuple[Simulator, str], home
) -> None:
    """Over half of one product's tests deleted upstream: refused, then removed when forced."""
    sim, url = fresh_server
    settings = make_settings(home, url)
    before = synced(settings, sim)
    pid = sorted(sim.world.products)[0]
    with sim.lock:
        ordered = sim.world.ordered_test_ids(pid)
        doomed = ordered[: len(ordered) * 2 // 3]
        for tid in doomed:
            sim.world.remove_test(tid)
    refused = invoke(settings, "sync", "--with-bugs")
    assert refused.exit_code == 3, refused.output
    assert f"Product {pid}: {len(doomed)} of {len(ordered)} stored tests" in refused.stdout
    assert ids_in(settings.db_path)["tests"] == before["tests"]
    confirmed = invoke(settings, "sync", "--with-bugs", "--force")
    assert confirmed.exit_code == 0, confirmed.output
    assert differences(rows(ids_in(settings.db_path)), rows(expected_ids(sim))) == {}
