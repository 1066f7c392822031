"""Start and stop server processes so that none outlives its owner."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):  # not Linux
        return None


_prctl = _load_prctl()  # resolved in the parent: the child only calls a function pointer after fork


def die_with_parent_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel send SIGTERM to the child when its parent *thread* exits.

    Only meaningful when called from the main thread (a worker thread exiting would kill the server), so
    returns None elsewhere; ``tritonlab down`` covers those cases through the registry.
    """
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    prctl = _prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return preexec


def same_process(pid: int, create_time: float | None) -> psutil.Process | None:
    """The live process ``pid`` if it is the one started at ``create_time`` (pids get reused)."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def create_time(pid: int | None) -> float | None:
    """When ``pid`` started (psutil's clock), or None if there is no such process: with the pid, it names one
    process even after the pid is reused."""
    if pid is None:
        return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def stop_process_tree(pid: int, create_time: float | None, grace: float) -> bool:
    """Stop ``pid`` and everything it started; True if a process was found (and is gone now).

    SIGTERM first: Triton finishes in-flight requests and unloads its models, and each python backend stub
    (a child process) exits after freeing its shared memory. Triton then idles in a one-second polling loop
    before exiting, so once its children are gone we end it with SIGKILL: that saves about 1.5 s a stop and
    loses nothing. After ``grace`` seconds everything left is killed.
    """
    proc = same_process(pid, create_time)
    if proc is None:
        return False
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):  # a process that is not our child can end (and be reaped) meanwhile
        children = proc.children(recursive=True)
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    if children:
        wait_procs_gone(children, timeout=grace)
    while time.monotonic() < deadline and _running(proc):
        if children and not any(c.is_running() for c in children):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # started with start_new_session: pgid == pid
    survivors = [p for p in (proc, *children) if p.is_running()]
    for p in survivors:
        with contextlib.suppress(psutil.Error):
            p.kill()
    wait_procs_gone(survivors, timeout=5)
    sweep_orphaned_shm(min_age=2.0)  # whatever died hard (now or earlier) leaves its regions in /dev/shm
    return True


def wait_procs_gone(procs: list[psutil.Process], timeout: float) -> None:
    """``psutil.wait_procs`` that survives its own race: psutil 7.2 lets an OSError from ``pidfd_open`` through
    (ENOENT for a live thread id, seen when a grading box closed while a Triton was still ending its threads), or a
    NoSuchProcess when that thread is gone by the time psutil looks again (seen once in CI)."""
    deadline = time.monotonic() + timeout
    try:
        psutil.wait_procs(procs, timeout=timeout)
    except (OSError, psutil.Error):
        while time.monotonic() < deadline and any(_running(p) for p in procs):
            time.sleep(0.05)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(pid: int, create_time: float | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if same_process(pid, create_time) is None:
            return True
        time.sleep(0.05)
    return same_process(pid, create_time) is None


SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"


def sweep_orphaned_shm(min_age: float = 5.0) -> list[str]:
    """Remove python-backend shared-memory regions that no process maps any more.

    A Triton that exits cleanly frees them; one killed hard (a killed kernel, a hung grading run) leaves 1 MiB or
    more each in /dev/shm. Only regions of this user, older than ``min_age`` seconds (never one being created),
    and mapped by no process we can see are removed.
    """
    if not SHM_DIR.is_dir():
        return []
    now = time.time()
    candidates = {}
    for region in SHM_DIR.glob(f"{SHM_PREFIX}*"):
        with contextlib.suppress(OSError):
            stat = region.stat()
            if stat.st_uid == os.getuid() and now - stat.st_mtime >= min_age:
                candidates[region.name] = region
    if not candidates:
        return []
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            text = maps.read_text()
            for name in [n for n in candidates if n in text]:
                del candidates[name]
        if not candidates:
            return []
    removed = []
    for name, region in candidates.items():
        with contextlib.suppress(OSError):
            region.unlink()
            removed.append(name)
    return removed
