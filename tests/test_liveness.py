"""Worker liveness: the worker holds ``worker.lock``; probes only look."""

from __future__ import annotations

import fcntl
import os
import threading

from testio_sync.tasks.liveness import (
    hold_worker_lock,
    release_worker_lock,
    worker_alive,
    worker_pid,
)


def test_a_worker_takes_its_lock_even_while_probes_keep_looking(tmp_path):
    """A probe holds the lock shared for an instant; the worker must not give up on it."""
    path = tmp_path / "worker.lock"
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            worker_alive(path)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(20):
            assert hold_worker_lock(path)
            assert worker_alive(path) and worker_pid(path) == os.getpid()
            release_worker_lock(path)
    finally:
        stop.set()
        prober.join()
    assert not worker_alive(path)


def test_a_second_worker_sees_the_first_one_and_backs_off(tmp_path):
    path = tmp_path / "worker.lock"
    path.touch()
    fd = os.open(path, os.O_RDWR)  # another worker's hold
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert worker_alive(path)
        assert not hold_worker_lock(path, patience_s=0.1)
    finally:
        os.close(fd)
    assert not worker_alive(path)


def test_on_a_shared_queue_a_second_worker_takes_the_next_slot_and_probes_see_both(tmp_path):
    """Another process holds ``worker.lock``; this one takes ``worker.1.lock``."""
    from testio_sync.tasks.liveness import hold_worker_slot, worker_pids

    path = tmp_path / "worker.lock"
    path.write_text('{"pid": 4242}')
    fd = os.open(path, os.O_RDWR)  # the first worker's hold, as another process would
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        taken = hold_worker_slot(path)
        assert taken == tmp_path / "worker.1.lock"
        assert worker_pids(path) == [4242, os.getpid()]
        release_worker_lock(path)
        assert worker_alive(path) and worker_pids(path) == [4242]
    finally:
        os.close(fd)
    assert not worker_alive(path)
