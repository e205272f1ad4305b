"""Hold the sync lock of a PostgreSQL store in a separate process, for test_pg_lock.py.

Usage: ``python pg_lock_holder.py URL RUN_ID [HEARTBEAT_S]``. Prints ``held`` once the
lock is ours, waits until stdin closes, releases, and prints ``released`` or ``lost``
(another process ended our session meanwhile). Tests SIGKILL or SIGSTOP it.
"""

from __future__ import annotations

import asyncio
import sys

from testio_sync.sync.pg_lock import PostgresSyncLock


async def hold(url: str, run_id: str, heartbeat_s: float) -> None:
    lock = PostgresSyncLock(url, run_id=run_id, timeout_s=0, heartbeat_s=heartbeat_s)
    await lock.acquire()
    print("held", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await asyncio.sleep(min(heartbeat_s * 3, 1.0))  # after a stop: let a heartbeat find out
    lost = lock.lost
    await lock.release()
    print("lost" if lost else "released", flush=True)


if __name__ == "__main__":
    heartbeat = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    asyncio.run(hold(sys.argv[1], sys.argv[2], heartbeat))
