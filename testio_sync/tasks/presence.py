"""Workers on a shared queue, seen from any host: a heartbeat key per worker in the queue.

The worker slots (``liveness``) show the workers of this machine and data directory
at once and never go stale, but a worker on another host (a PostgreSQL store's workers
share one queue from anywhere) holds no file here: a CLI or a ``--no-worker`` server
there would say "no worker" and run syncs itself. So each worker on a shared queue also
keeps a key ``worker-beat:<host>:<pid>:<token>`` in huey's key-value store, rewritten
every ``BEAT_S``. The queue's store, not the mirror's: every process of the mirror
reaches it already, it is shared exactly as far as the queue is (one per mirror), it
needs no schema change, and ``db copy`` or a backup never carries phantom workers along.

Stamps are the queue server's clock (``server_time``), so hosts whose clocks differ
agree on an age. A key counts as a live worker while its last beat is at most
``ALIVE_WITHIN_S`` old (three beats), and on this host only while its process exists.
A worker deletes its key when it stops; a killed worker's key is ignored after that
bound and deleted by the first reader after ``FORGET_AFTER_S``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from datetime import UTC, datetime
from typing import Any

import psutil

from testio_sync.dates import to_iso
from testio_sync.sync.lock_record import holder_gone
from testio_sync.tasks.backends import server_time
from testio_sync.tasks.queue import huey, queue_is_shared

logger = logging.getLogger("testio_sync.worker")

PREFIX = "worker-beat:"
BEAT_S = 10.0
ALIVE_WITHIN_S = 3 * BEAT_S
FORGET_AFTER_S = 3600.0
_KEPT = ("host", "pid", "create_time", "started_at", "beat_at")


class Beating:
    """This worker's heartbeat key and the thread that rewrites it; one per worker process."""

    def __init__(self) -> None:
        self.key = f"{PREFIX}{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.record: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "create_time": psutil.Process().create_time(),
        }
        self.storage = huey.storage  # the queue this worker serves
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Write the key once, stamped by the queue server's clock."""
        now = server_time(self.storage)
        self.record.setdefault("started_at", now)
        self.record["beat_at"] = now
        self.storage.put_data(self.key, json.dumps(self.record).encode())

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="worker-beat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while huey.storage is self.storage:  # ``configure`` moved this process elsewhere: stop
            try:
                self.beat()
            except Exception as exc:  # the queue server away for a moment: the next beat retries
                logger.warning("could not write this worker's heartbeat: %s", exc)
            if self._stop.wait(BEAT_S):
                return

    def stop(self) -> None:
        """Stop beating and delete the key: a worker that stops says so at once."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)
        try:
            self.storage.delete_data(self.key)
        except Exception as exc:  # it goes stale and is forgotten instead
            logger.warning("could not remove this worker's heartbeat: %s", exc)


def live_workers() -> list[dict[str, Any]]:
    """The workers beating on this queue: ``host``, ``pid``, ``started_at``, ``beat_age_seconds``.

    Empty on a private SQLite queue (its workers are in the slots) and when the queue's
    server cannot be read: status must answer anyway.
    """
    if not queue_is_shared():
        return []
    try:
        items = huey.storage.result_items()
        now = server_time(huey.storage)
    except Exception as exc:
        logger.warning("could not read the workers' heartbeats: %s", exc)
        return []
    found = []
    for key, raw in items.items():
        if not key.startswith(PREFIX) or (record := _parse(raw)) is None:
            continue
        age = max(0.0, now - record["beat_at"])
        if age > FORGET_AFTER_S:
            _forget(key)
            continue
        if age > ALIVE_WITHIN_S or holder_gone(record):  # holder_gone: this host's PIDs only
            continue
        found.append(
            {
                "host": record["host"],
                "pid": record["pid"],
                "started_at": to_iso(datetime.fromtimestamp(record["started_at"], UTC)),
                "beat_age_seconds": round(age, 1),
            }
        )
    return sorted(found, key=lambda w: (w["host"], w["pid"]))


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not all(k in record for k in _KEPT):
        return None
    stamps = (record["beat_at"], record["started_at"])
    if not isinstance(record["pid"], int) or not all(isinstance(t, int | float) for t in stamps):
        return None
    return record


def _forget(key: str) -> None:
    try:
        huey.storage.delete_data(key)
    except Exception as exc:
        logger.debug("could not delete the stale heartbeat %s: %s", key, exc)
