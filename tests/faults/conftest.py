"""Fixtures of the fault suite: worker processes that are always stopped, whatever a test did."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testio_sync.settings import Settings

from .support import Workers


@pytest.fixture
def worker_pool() -> Iterator[Callable[[Settings], Workers]]:
    """``worker_pool(settings)``: a ``Workers`` whose leftover processes die at teardown."""
    made: list[Workers] = []

    def make(settings: Settings) -> Workers:
        made.append(Workers(settings))
        return made[-1]

    yield make
    for workers in made:
        workers.stop_all()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
