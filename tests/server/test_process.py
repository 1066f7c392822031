"""Process helpers: waiting for processes to be gone, whatever psutil is handed."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from tritonlab.server.process import same_process, stop_process_tree, wait_procs_gone

THREADED = """import threading, time
for _ in range(4):
    threading.Thread(target=time.sleep, args=(60,)).start()
time.sleep(60)
"""


def test_waiting_on_a_live_thread_id_times_out_instead_of_raising():
    # A cgroup's "tasks" file lists thread ids; psutil accepts them, and its pidfd wait raises ENOENT on one.
    proc = subprocess.Popen([sys.executable, "-c", THREADED])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).num_threads() < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        thread_ids = [t.id for t in psutil.Process(proc.pid).threads() if t.id != proc.pid]
        assert thread_ids
        with pytest.raises(OSError):
            psutil.wait_procs([psutil.Process(thread_ids[0])], timeout=0.2)  # the race this helper survives
        started = time.monotonic()
        wait_procs_gone([psutil.Process(thread_ids[0])], timeout=0.5)
        assert 0.4 < time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()


def test_returns_as_soon_as_killed_processes_and_their_threads_are_gone():
    proc = subprocess.Popen([sys.executable, "-c", THREADED])
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).num_threads() < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    targets = [psutil.Process(proc.pid), *(psutil.Process(t.id) for t in psutil.Process(proc.pid).threads())]
    proc.kill()
    started = time.monotonic()
    wait_procs_gone(targets, timeout=10)
    proc.wait()
    assert time.monotonic() - started < 5
    assert not psutil.pid_exists(proc.pid)


def test_a_thread_that_vanishes_mid_wait_is_taken_as_gone(monkeypatch: pytest.MonkeyPatch):
    # CI saw the second half of the race: pidfd_open gave ENOENT, and by psutil's own re-check the thread's /proc entry
    # was gone, so wait_procs raised NoSuchProcess. The race cannot be timed from a test; psutil's raise is replayed.
    proc = subprocess.Popen([sys.executable, "-c", THREADED])
    try:
        target = psutil.Process(proc.pid)

        def vanished(timeout: float | None = None) -> int:
            raise psutil.NoSuchProcess(proc.pid)

        monkeypatch.setattr(target, "wait", vanished)
        proc.kill()
        proc.wait()
        started = time.monotonic()
        wait_procs_gone([target], timeout=10)
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()


def test_stopping_a_process_that_ends_while_its_children_are_listed(monkeypatch: pytest.MonkeyPatch):
    # A server that is not our child (an orphan `down` stops) can end and be reaped between the lookup and the
    # listing of its children; psutil's raise is replayed there, the stop still ends the real process.
    proc = subprocess.Popen([sys.executable, "-c", THREADED], start_new_session=True)
    try:

        def vanished(self: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
            raise psutil.NoSuchProcess(self.pid)

        monkeypatch.setattr(psutil.Process, "children", vanished)
        created = psutil.Process(proc.pid).create_time()
        assert stop_process_tree(proc.pid, created, grace=2) is True
        proc.wait(timeout=5)  # (psutil may have reaped it already)
        assert same_process(proc.pid, created) is None
    finally:
        proc.kill()
        proc.wait()
