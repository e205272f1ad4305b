"""Shared fixtures: a real simulator on 127.0.0.1, a private data directory, a real consumer.

The environment is pointed at a throwaway home before anything imports
``testio_sync.tasks``, so no test touches the user's real ``~/.testio-sync``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SESSION_HOME = tempfile.mkdtemp(prefix="testio-sync-tests-")
os.environ["TESTIO_SYNC_HOME"] = _SESSION_HOME
# Kept: where the tests' servers are and whether they must be there (see queue_servers).
_KEPT = ("TESTIO_SYNC_HOME", "TESTIO_SYNC_REQUIRE_SERVICES")
for _name in list(os.environ):
    if (
        _name.startswith("TESTIO_")
        and _name not in _KEPT
        and not _name.startswith("TESTIO_SYNC_TEST_")
    ):
        del os.environ[_name]

import pytest  # noqa: E402
import testsupport  # noqa: E402
from queue_servers import BACKENDS, queue_url_for  # noqa: E402
from store_servers import STORES, postgres_store  # noqa: E402
from testsupport import TOKEN, make_settings, start_consumer, stop_consumer  # noqa: E402

from testio_sync.settings import Secret, Settings  # noqa: E402
from testio_sync.simulator import Simulator  # noqa: E402
from testio_sync.store.db import close_idle_connections  # noqa: E402

__all__ = ["TOKEN", "make_settings"]


@pytest.fixture(scope="session")
def tiny_server() -> Iterator[tuple[Simulator, str]]:
    """A tiny-scale simulator shared by the session (read-only use: no advance, no faults)."""
    sim = Simulator(scale="tiny", seed=1, token=TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


@pytest.fixture
def fresh_server() -> Iterator[tuple[Simulator, str]]:
    """A tiny simulator of this test's own, free to advance and to break."""
    sim = Simulator(scale="tiny", seed=2, token=TOKEN)
    with sim.serve(host="127.0.0.1", port=0) as server:
        yield sim, server.base_url


@pytest.fixture(autouse=True)
def _close_idle_store_connections() -> Iterator[None]:
    """Each test's mirror keeps pooled connections; closed after it, they cannot pile up."""
    yield
    close_idle_connections()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, home: Path, tiny_server: tuple[Simulator, str]
) -> Settings:
    if "store_backend" in request.fixturenames:  # its store first: the settings name it
        request.getfixturevalue("store_backend")
    return make_settings(home, tiny_server[1])


@pytest.fixture
def consumer(settings: Settings) -> Iterator[object]:
    """A real huey consumer in this process (threads), bound to ``settings``, alive."""
    worker = start_consumer(settings)
    try:
        yield worker
    finally:
        stop_consumer(worker, settings)


@pytest.fixture
def queue_url(request: pytest.FixtureRequest) -> Iterator[Secret | None]:
    """Each queue backend in turn (``pytest_generate_tests``): SQLite, then Redis and
    PostgreSQL when reachable."""
    with queue_url_for(request.param) as url:
        yield Secret(url) if url else None


# (queue, store) for tests that take both: the pairs a deployment uses, one person's
# SQLite pair and a team's PostgreSQL store on either shared queue (each queue on its
# own is covered by the queue tests, each store on its own by the store tests).
QUEUE_STORE_PAIRS = (("sqlite", "sqlite"), ("redis", "postgresql"), ("postgresql", "postgresql"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``store_backend`` once per store (SQLite, PostgreSQL);
    one that also takes ``queue_url``, once per pair of ``QUEUE_STORE_PAIRS``."""
    if "store_backend" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        stores = (
            ("sqlite",)
            if marked("sqlite_only")
            else ("postgresql",)
            if marked("postgresql_only")
            else STORES
        )
        if "queue_url" in metafunc.fixturenames:
            pairs = [pair for pair in QUEUE_STORE_PAIRS if pair[1] in stores]
            metafunc.parametrize(
                ("queue_url", "store_backend"),
                pairs,
                indirect=True,
                ids=[f"{queue}-{store}" for queue, store in pairs],
            )
        else:
            metafunc.parametrize("store_backend", stores, indirect=True)
    elif "queue_url" in metafunc.fixturenames:
        metafunc.parametrize("queue_url", BACKENDS, indirect=True)


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The mirror's store for this test: settings from ``make_settings`` point at it."""
    with _using_store(request.param) as kind:
        yield kind


@pytest.fixture(scope="module", params=STORES)
def module_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """One store shared by a module's read-only tests, on each engine in turn.

    For data synced once per module: ``make_settings`` points at this store while
    the module runs (a test's own ``store_backend`` takes over during that test).
    """
    with _using_store(request.param) as kind:
        yield kind


@contextmanager
def _using_store(kind: str) -> Iterator[str]:
    """Point ``make_settings`` at a store of ``kind`` (a fresh PostgreSQL schema, or the
    SQLite file of each home) until the block ends, then at the store before it."""
    previous = testsupport.STORE_URL  # a module's shared store (``module_store``) comes back
    try:
        if kind == "sqlite":
            testsupport.STORE_URL = None
            yield kind
        else:
            with postgres_store() as url:
                testsupport.STORE_URL = url
                yield kind
    finally:
        testsupport.STORE_URL = previous
