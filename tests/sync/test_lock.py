"""The sync lock across real processes, and the per-entity asyncio locks."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lock_holders
import psutil
import pytest

from testio_sync.errors import SyncLockedError
from testio_sync.sync.lock import EntityLocks, SyncLock, describe_holder, is_stale, read_holder

HOLDER = Path(__file__).with_name("lock_holder.py")
HOUR = 3600.0


def iso_ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds, UTC).isoformat().replace("+00:00", "Z")


def rewrite(path: Path, *, mtime_ago: float | None = None, **fields: Any) -> dict[str, Any]:
    """Edit the record in place under the same flock the library uses; optionally age it."""
    with path.open("r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        record = {**json.loads(handle.read()), **fields}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record))
        handle.flush()
        if mtime_ago is not None:
            old = time.time() - mtime_ago
            os.utime(handle.fileno(), (old, old))
    return record


def write_record(path: Path, **fields: Any) -> dict[str, Any]:
    record = {
        "pid": os.getpid(),
        "create_time": psutil.Process().create_time(),
        "run_id": "run-other",
        "token": "not-ours",
        "started_at": iso_ago(60),
        "heartbeat_at": iso_ago(1),
        **fields,
    }
    path.write_text(json.dumps(record))
    return record


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


async def wait_until_async(condition: Callable[[], bool], what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def holder_process(
    path: Path, run_id: str, heartbeat_s: float = 600.0
) -> AbstractContextManager[subprocess.Popen[str]]:
    """A separate process holding the lock; killed at the end if still running."""
    return lock_holders.holder_process(HOLDER, path, run_id, heartbeat_s)


def test_a_second_lock_waits_without_blocking_the_loop_then_names_the_holder(
    tmp_path: Path,
) -> None:
    """The waiter polls with asyncio.sleep, so other coroutines run; the error names the holder."""
    path = tmp_path / "sync.lock"

    async def main() -> None:
        first = SyncLock(path, run_id="run-first")
        await first.acquire()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        second = SyncLock(path, run_id="run-second", timeout_s=0.3, poll_s=0.02)
        with pytest.raises(SyncLockedError) as info:
            await second.acquire()
        ticking.cancel()
        assert ticks >= 2
        holder = read_holder(path)
        assert holder is not None
        message = str(info.value)
        assert f"PID {os.getpid()}" in message
        assert "run run-first" in message
        assert f"since {holder['started_at']}" in message
        assert info.value.holder == holder
        await first.release()

    asyncio.run(main())


def test_timeout_zero_fails_on_the_first_try_without_waiting(tmp_path: Path) -> None:
    """With timeout_s=0 the coroutine raises before it ever suspends."""
    path = tmp_path / "sync.lock"
    with SyncLock(path, run_id="run-first"):
        coroutine = SyncLock(path, run_id="run-second", timeout_s=0).acquire()
        with pytest.raises(SyncLockedError, match="run-first"):
            coroutine.send(None)
        with pytest.raises(SyncLockedError, match="run-first"):
            SyncLock(path, run_id="run-third", timeout_s=0).acquire_blocking()


def test_a_waiter_gets_the_lock_when_the_holder_releases(tmp_path: Path) -> None:
    """A release during the wait hands the lock over without a warning."""
    path = tmp_path / "sync.lock"

    async def main() -> None:
        first = SyncLock(path, run_id="run-first")
        await first.acquire()
        second = SyncLock(path, run_id="run-second", timeout_s=30, poll_s=0.02)
        waiting = asyncio.create_task(second.acquire())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()
        await first.release()
        assert await asyncio.wait_for(waiting, 10) == []
        assert (read_holder(path) or {})["run_id"] == "run-second"
        await second.release()

    asyncio.run(main())


def test_a_killed_holder_is_reclaimed_at_once_with_a_dead_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Crash recovery: SIGKILL leaves the record behind; the next acquire takes it over."""
    caplog.set_level(logging.WARNING, logger="testio_sync.lock")
    path = tmp_path / "sync.lock"
    with holder_process(path, "run-crashed") as proc:
        inode = path.stat().st_ino
        assert (read_holder(path) or {})["pid"] == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    lock = SyncLock(path, run_id="run-next", timeout_s=0)
    warnings = lock.acquire_blocking()
    try:
        assert len(warnings) == 1
        assert f"PID {proc.pid} (run run-crashed" in warnings[0]
        assert warnings[0].endswith("holder is dead")
        assert [r.getMessage() for r in caplog.records if r.name == "testio_sync.lock"] == warnings
        assert (read_holder(path) or {})["run_id"] == "run-next"
        assert path.stat().st_ino == inode
    finally:
        lock.release_blocking()


def test_a_hung_holder_is_kept_while_it_heartbeats_and_reclaimed_an_hour_after(
    tmp_path: Path,
) -> None:
    """A stopped holder with a fresh heartbeat keeps the lock however long it has run.

    Once its heartbeat and mtime are two hours old, it is reclaimed.
    """
    path = tmp_path / "sync.lock"
    with holder_process(path, "run-hung") as proc:
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            rewrite(path, started_at=iso_ago(3 * HOUR), heartbeat_at=iso_ago(0))
            with pytest.raises(SyncLockedError) as info:
                SyncLock(path, run_id="run-next", timeout_s=0).acquire_blocking()
            assert f"PID {proc.pid} (run run-hung" in str(info.value)
            assert info.value.holder["run_id"] == "run-hung"

            rewrite(path, heartbeat_at=iso_ago(2 * HOUR), mtime_ago=2 * HOUR)
            assert read_holder(path) is None
            assert "hung" in ((describe_holder(path) or {})["stale"] or "")
            lock = SyncLock(path, run_id="run-next", timeout_s=0)
            warnings = lock.acquire_blocking()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert len(warnings) == 1
        assert "run-hung" in warnings[0]
        assert "holder is hung: no heartbeat for 2.0 h" in warnings[0]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "lost"
        assert proc.wait(timeout=10) == 0
    assert (read_holder(path) or {})["run_id"] == "run-next"
    lock.release_blocking()
    assert path.read_text() == ""


def test_a_live_pid_with_another_start_time_is_a_reused_pid(tmp_path: Path) -> None:
    """PID reuse: the PID is alive but its process started at another time."""
    path = tmp_path / "sync.lock"
    now = time.time()
    real = write_record(path)
    assert is_stale(real, now=now, stale_after_s=HOUR) is None
    parent = psutil.Process(os.getppid())
    assert (
        is_stale(
            {**real, "pid": parent.pid, "create_time": parent.create_time()},
            now=now,
            stale_after_s=HOUR,
        )
        is None
    )
    reused = write_record(path, create_time=real["create_time"] - 1000, run_id="run-old")
    assert is_stale(reused, now=now, stale_after_s=HOUR) == (
        f"holder is dead (PID {os.getpid()} now belongs to another process)"
    )
    with SyncLock(path, run_id="run-next", timeout_s=0) as lock:
        assert "run-old" in lock.warnings[0] and "another process" in lock.warnings[0]


def test_a_zombie_holder_counts_as_dead(tmp_path: Path) -> None:
    """psutil still sees an unreaped child; its status tells it has exited."""
    path = tmp_path / "sync.lock"
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        zombie = psutil.Process(child.pid)
        wait_until(lambda: zombie.status() == psutil.STATUS_ZOMBIE, "the child to exit")
        record = write_record(
            path, pid=child.pid, create_time=zombie.create_time(), run_id="run-zombie"
        )
        assert "zombie" in (is_stale(record, now=time.time(), stale_after_s=HOUR) or "")
        with SyncLock(path, run_id="run-next", timeout_s=0) as lock:
            assert "run-zombie" in lock.warnings[0] and "zombie" in lock.warnings[0]


def test_the_async_heartbeat_refreshes_the_record_and_the_mtime(tmp_path: Path) -> None:
    """Each beat rewrites heartbeat_at and touches the file."""
    path = tmp_path / "sync.lock"

    async def main() -> None:
        async with SyncLock(path, run_id="run-beat", heartbeat_s=0.05) as lock:
            started = rewrite(path, heartbeat_at=iso_ago(600), mtime_ago=600)["started_at"]
            recent = time.time() - 60

            def beaten() -> bool:
                record = read_holder(path) or {}
                heartbeat = datetime.fromisoformat(record["heartbeat_at"]).timestamp()
                return heartbeat > recent and path.stat().st_mtime > recent

            await wait_until_async(beaten, "a heartbeat")
            assert (read_holder(path) or {})["started_at"] == started
            assert not lock.lost
        assert path.read_text() == ""

    asyncio.run(main())


def test_the_blocking_lock_heartbeats_from_a_daemon_thread(tmp_path: Path) -> None:
    """For non-async callers (restore) a thread touches the file; it stops at release."""
    path = tmp_path / "sync.lock"
    with SyncLock(path, run_id="run-restore", heartbeat_s=0.05):
        old = time.time() - 600
        os.utime(path, (old, old))
        wait_until(lambda: path.stat().st_mtime > old + 60, "a heartbeat")
        assert any(t.name == "sync-lock-heartbeat-run-restore" for t in threading.enumerate())
    assert path.read_text() == ""
    assert not any(t.name == "sync-lock-heartbeat-run-restore" for t in threading.enumerate())


def test_a_holder_whose_lock_was_reclaimed_sees_lost_and_leaves_the_new_record(
    tmp_path: Path,
) -> None:
    """Judged hung and reclaimed: the next beat sets lost; release does not clear the new holder."""
    path = tmp_path / "sync.lock"

    async def main() -> None:
        first = SyncLock(path, run_id="run-first", heartbeat_s=0.05)
        await first.acquire()
        inode = path.stat().st_ino
        rewrite(path, heartbeat_at=iso_ago(2 * HOUR), mtime_ago=2 * HOUR)
        second = SyncLock(path, run_id="run-second", timeout_s=0)
        warnings = await second.acquire()
        assert "run run-first" in warnings[0] and "hung" in warnings[0]
        await wait_until_async(lambda: first.lost, "the first holder to notice")
        assert "Lost the sync lock" in first.warnings[-1]
        assert "run run-second" in first.warnings[-1]
        await first.release()
        assert (read_holder(path) or {})["run_id"] == "run-second"
        await second.release()
        assert path.read_text() == ""
        assert path.stat().st_ino == inode

    asyncio.run(main())


def test_release_clears_only_its_own_record(tmp_path: Path) -> None:
    """An instance that never acquired leaves the holder's record alone."""
    path = tmp_path / "sync.lock"
    with SyncLock(path, run_id="run-first"):
        before = path.read_text()
        SyncLock(path, run_id="run-other").release_blocking()
        assert path.read_text() == before


def test_the_lock_file_is_one_private_inode_for_good(tmp_path: Path) -> None:
    """Created 0600 whatever the umask; an existing file is made 0600; never replaced."""
    path = tmp_path / "sync.lock"
    umask = os.umask(0)
    try:
        with SyncLock(path, run_id="run-1"):
            assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)
    inode = path.stat().st_ino
    os.chmod(path, 0o644)
    with SyncLock(path, run_id="run-2"):
        assert path.stat().st_mode & 0o777 == 0o600
    write_record(path, pid=2**22 + 1, run_id="run-gone")
    with SyncLock(path, run_id="run-3", timeout_s=0) as lock:
        assert "run-gone" in lock.warnings[0]
    assert path.stat().st_ino == inode
    assert path.read_text() == ""


def test_reading_the_holder_changes_nothing(tmp_path: Path) -> None:
    """Status displays never create, chmod or touch the lock file."""
    assert read_holder(tmp_path / "absent.lock") is None
    assert describe_holder(tmp_path / "absent.lock") is None
    assert not (tmp_path / "absent.lock").exists()
    path = tmp_path / "sync.lock"
    record = write_record(path, run_id="run-read")
    os.chmod(path, 0o644)
    old = time.time() - 2 * HOUR
    os.utime(path, (old, old))
    before = path.stat()
    assert read_holder(path) == record
    assert (describe_holder(path) or {})["stale"] is None
    after = path.stat()
    assert (after.st_ino, after.st_mode, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_mode,
        before.st_size,
        before.st_mtime_ns,
    )
    path.write_text("")
    assert read_holder(path) is None


def test_entity_locks_serialise_one_key_and_run_different_keys_at_once() -> None:
    """Same key: one refresh at a time, same lock; other keys are not held up; nothing is kept."""

    async def main() -> None:
        locks = EntityLocks()
        order: list[str] = []
        gate, entered = asyncio.Event(), asyncio.Event()

        async def refresh(name: str, key: tuple[str, int], *, wait: bool) -> None:
            async with locks.hold(key):
                order.append(f"{name} in")
                if wait:
                    entered.set()
                    await gate.wait()
                order.append(f"{name} out")

        first = asyncio.create_task(refresh("first", ("bugs", 1), wait=True))
        await asyncio.wait_for(entered.wait(), 10)
        assert locks.get(("bugs", 1)) is locks.get(("bugs", 1))
        assert locks.get(("bugs", 1)) is not locks.get(("bugs", 2))
        second = asyncio.create_task(refresh("second", ("bugs", 1), wait=False))
        await asyncio.wait_for(refresh("other", ("bugs", 2), wait=False), 10)
        assert order == ["first in", "other in", "other out"]
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert order[3:] == ["first out", "second in", "second out"]
        del first, second
        assert len(locks) == 0

    asyncio.run(main())


def test_the_sync_lock_refuses_while_the_task_holds_an_entity_lock(tmp_path: Path) -> None:
    """Deadlock guard: no file lock inside hold(); fine again after it; hold() does not nest."""
    path = tmp_path / "sync.lock"

    async def main() -> None:
        locks = EntityLocks()
        lock = SyncLock(path, run_id="run-guard", timeout_s=0)
        async with locks.hold(("bugs", 7)):
            with pytest.raises(RuntimeError, match=r"entity lock\(s\) \('bugs', 7\)"):
                await lock.acquire()
            with pytest.raises(RuntimeError, match="deadlock"):
                lock.acquire_blocking()
            with pytest.raises(RuntimeError, match="already holds"):
                async with locks.hold(("bugs", 7)):
                    pass
        assert await lock.acquire() == []
        await lock.release()

    asyncio.run(main())


def test_an_unreadable_record_is_replaced_with_a_warning(tmp_path: Path) -> None:
    """Only a writer that died mid-write leaves garbage; status shows it as free."""
    path = tmp_path / "sync.lock"
    path.write_text('{"pid": 12')
    assert describe_holder(path) is None
    with SyncLock(path, run_id="run-next", timeout_s=0) as lock:
        assert lock.warnings == [f"Replaced an unreadable sync lock record at {path}"]
        assert (read_holder(path) or {})["run_id"] == "run-next"
