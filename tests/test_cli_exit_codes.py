"""Exit codes say what happened: the same input gives the same code whatever the store holds."""

from __future__ import annotations

import json

import pytest
from testsupport import TOKEN, make_settings, start_consumer, stop_consumer
from typer.testing import CliRunner, Result

from testio_sync import cli
from testio_sync.service import SyncService
from testio_sync.settings import Settings
from testio_sync.simulator import Simulator
from testio_sync.store.models import SyncMetadata, database
from testio_sync.sync.types import SyncStatus


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(env=settings.to_env()).invoke(cli.app, list(args))


@pytest.mark.parametrize("stored_first", [False, True], ids=["empty-store", "products-stored"])
def test_an_unknown_product_id_exits_2_whether_or_not_products_are_stored(
    settings: Settings, stored_first: bool
) -> None:
    """Before, 2 with products stored but 3 (a partial run) on an empty store."""
    if stored_first:
        assert invoke(settings, "sync").exit_code == 0
    result = invoke(settings, "sync", "--product-ids", "987654")
    assert result.exit_code == 2, result.output
    assert "Unknown product id(s): 987654" in result.output


def test_a_test_that_cannot_be_fetched_makes_the_run_partial_exit_3(
    home, fresh_server: tuple[Simulator, str]
) -> None:
    """A broken test page is data the mirror lacks: ``partial``, not ``succeeded``."""
    sim, url = fresh_server
    broken = sorted(t for t, v in sim.world.tests.items() if v.status == "archived")[0]
    sim.update_faults(broken_test_ids=[broken])
    result = invoke(make_settings(home, url), "sync", "--json")
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "partial"
    assert any("cannot be fetched" in error for error in data["errors"]), data


@pytest.mark.parametrize("stored_first", [False, True], ids=["empty-store", "older-mirror"])
def test_a_base_url_with_a_wrong_path_fails_exit_1(
    home, tiny_server: tuple[Simulator, str], stored_first: bool
) -> None:
    """A 404 on the product list itself: no TestIO API there, whatever the store holds.

    (A mirror that recorded its account refuses the other URL before any call; one
    from before accounts were recorded reaches the API and fails so.)
    """
    url = tiny_server[1]
    if stored_first:
        assert invoke(make_settings(home, url), "sync").exit_code == 0
        with database.connection_context():
            SyncMetadata.delete().where(SyncMetadata.key == "account").execute()
    wrong = make_settings(home, url.replace("/customer/", "/customr/"))
    result = invoke(wrong, "sync", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    assert data["errors"] == [
        f"No TestIO API at {wrong.api_base_url}: its product list answered HTTP 404; "
        "check TESTIO_CUSTOMER_API_BASE_URL."
    ]


def test_a_timeout_on_a_workers_run_exits_5_and_the_run_goes_on(home) -> None:
    """Its own code, not 1: the run did not fail, the wait ran out (README, --help)."""
    sim = Simulator(scale="tiny", seed=3, token=TOKEN, latency_ms=300)
    with sim.serve(host="127.0.0.1", port=0) as server:
        settings = make_settings(home, server.base_url)
        SyncService(settings)
        worker = start_consumer(settings)
        try:
            result = invoke(settings, "sync", "--timeout", "0.3")
            assert result.exit_code == 5, result.output
            assert "goes on" in result.stderr
            run_id = result.stderr.split("run ")[1].split()[0]
            assert SyncService(settings).handle(run_id).wait(60).status == SyncStatus.SUCCEEDED
        finally:
            stop_consumer(worker, settings)
    help_text = CliRunner().invoke(cli.app, ["--help"]).stdout
    assert "5    sync --timeout ran out" in help_text
