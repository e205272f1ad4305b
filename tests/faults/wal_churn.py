"""Open, read and close a SQLite file in a loop, as a short-lived CLI process does.

Usage: ``python wal_churn.py DB SECONDS``. Prints ``churning`` after the first cycle.
Each close of the last connection deletes the ``-wal`` and ``-shm`` files, so another
process sees them come and go many times a second.
"""

from __future__ import annotations

import sqlite3
import sys
import time


def churn(path: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    announced = False
    while time.monotonic() < deadline:
        conn = sqlite3.connect(path, timeout=15)
        conn.execute("SELECT COUNT(*) FROM sync_events").fetchall()
        conn.close()
        if not announced:
            print("churning", flush=True)
            announced = True


if __name__ == "__main__":
    churn(sys.argv[1], float(sys.argv[2]))
