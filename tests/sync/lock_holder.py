"""Hold the sync lock in a separate process, for tests/sync/test_lock.py.

Usage: ``python lock_holder.py PATH RUN_ID [HEARTBEAT_S]``. Prints ``held`` once the
lock is ours, waits until stdin closes, releases, and prints ``released`` or ``lost``
(another process reclaimed the lock meanwhile). Tests SIGKILL or SIGSTOP it to play a
crashed or a hung sync.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from testio_sync.sync.lock import SyncLock


async def hold(path: Path, run_id: str, heartbeat_s: float) -> None:
    lock = SyncLock(path, run_id=run_id, timeout_s=0, heartbeat_s=heartbeat_s)
    await lock.acquire()
    print("held", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await lock.release()
    print("lost" if lock.lost else "released", flush=True)


if __name__ == "__main__":
    heartbeat = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    asyncio.run(hold(Path(sys.argv[1]), sys.argv[2], heartbeat))
