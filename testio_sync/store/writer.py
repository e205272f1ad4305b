"""Store writes on one thread of their own, so the event loop keeps requests flowing.

Turning an answer into rows (JSON, normalising, the upsert) is CPU work; done
on the event loop it stalls every request in flight. One writer thread takes
it over: writes stay serial (SQLite has one writer anyway) and in order, and
the loop, which mostly waits on sockets, gets the GIL back every few
milliseconds to send and receive. The thread holds one connection for its
life: closing the last connection would checkpoint the WAL on every save.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from testio_sync.store.models import database

T = TypeVar("T")
logger = logging.getLogger(__name__)
SWITCH_INTERVAL_S = 0.0005


class StoreWriter:
    """A single-thread executor for store writes, with its own open connection."""

    def __init__(self, *, switch_interval_s: float | None = SWITCH_INTERVAL_S) -> None:
        # While the writer computes, the loop thread waits for the GIL up to the
        # switch interval (5 ms by default) for every socket read; shorter slices
        # let answers keep arriving during a long save.
        self._previous_interval = sys.getswitchinterval()
        if switch_interval_s is not None:
            sys.setswitchinterval(min(switch_interval_s, self._previous_interval))
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="store-writer", initializer=self._open
        )
        self._context: Any = None

    def _open(self) -> None:
        self._context = database.connection_context()
        self._context.__enter__()

    def _close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the writer thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def post(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Queue ``fn(*args)`` behind the writes already queued, without waiting for it.

        For writes nobody waits on (progress rows): done on the loop thread they would
        block every request while a save holds the write lock. A failure is logged;
        once the writer is closed, ``fn`` runs in place.
        """
        try:
            future = self._pool.submit(fn, *args)
        except RuntimeError:  # shut down: nothing else writes now
            fn(*args)
            return
        future.add_done_callback(_log_failure)

    def close(self) -> None:
        """Finish queued writes, close the connection and stop the thread."""
        self._pool.submit(self._close).result()
        self._pool.shutdown(wait=True)
        sys.setswitchinterval(self._previous_interval)


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        logger.warning("A background store write failed: %s", exc)


async def direct_call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """The writer for callers without a writer thread: run in place."""
    return fn(*args, **kwargs)
