"""No tritonserver outlives its owner: killed owners, thread-started servers, normal exits, strays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from conftest import VENV_BIN, tritonserver_pids, wait_for
from tritonlab.server import registry

OWNER = """
import json, sys, threading, time
from tritonlab.server import start_server

how = sys.argv[1]
box = {}
def start():
    box["server"] = start_server()
if how == "thread":  # e.g. a worker thread in a notebook: no parent-death signal possible
    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
else:
    start()
print(json.dumps({"pid": box["server"].pid}), flush=True)
if how == "exit":
    sys.exit(0)  # normal exit without stop(): atexit must stop the server
time.sleep(600)
"""


def start_owner(how: str) -> tuple[subprocess.Popen[str], int]:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, how], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line, f"owner exited with {owner.wait()}"
    return owner, json.loads(line)["pid"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def tritonlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "tritonlab"), *args], capture_output=True, text=True, timeout=120)


def test_kill_9_of_the_owner_then_down_all_leaves_no_tritonserver():
    baseline = tritonserver_pids()
    owner, server_pid = start_owner("main")
    assert alive(server_pid) and registry.get(str(server_pid)) is not None
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    # The kernel's parent-death signal already makes Triton shut down; `down --all` clears the rest.
    assert wait_for(lambda: not alive(server_pid), timeout=20)
    result = tritonlab("down", "--all")
    assert result.returncode == 0, result.stderr
    assert tritonserver_pids() - baseline == set()
    assert registry.get(str(server_pid)) is None


def test_server_started_from_a_thread_is_orphaned_and_down_stops_it():
    owner, server_pid = start_owner("thread")
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert alive(server_pid), "a thread-started server has no parent-death signal; the registry must catch it"
    status = json.loads(tritonlab("status", "--json").stdout)
    entry = next(row for row in status if row["pid"] == server_pid)
    assert entry["owner"] == "orphaned" and entry["ready"] is True
    result = tritonlab("down")  # without --all: orphans only
    assert result.returncode == 0 and f"stopped server {server_pid}" in result.stdout
    assert wait_for(lambda: not alive(server_pid), timeout=5)


def test_down_without_all_leaves_servers_whose_owner_lives():
    owner, server_pid = start_owner("main")
    try:
        result = tritonlab("down")
        assert "left running" in result.stdout and alive(server_pid)
        result = tritonlab("down", "--all")
        assert f"stopped server {server_pid}" in result.stdout
        assert wait_for(lambda: not alive(server_pid), timeout=5)
    finally:
        owner.kill()
        owner.wait()


def test_normal_exit_of_the_owner_stops_its_server():
    owner, server_pid = start_owner("exit")
    assert owner.wait(timeout=30) == 0
    assert not alive(server_pid)
    assert registry.get(str(server_pid)) is None


def test_down_all_finds_unregistered_strays():
    owner, server_pid = start_owner("thread")
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    registry.get(str(server_pid)).remove()  # as if the registry file were lost
    assert alive(server_pid)
    result = tritonlab("down", "--all", "--json")
    assert json.loads(result.stdout)["strays"] == 1
    assert wait_for(lambda: not alive(server_pid), timeout=5)


def test_registry_drops_entries_of_dead_processes_and_junk_files():
    record = registry.ServerRecord(
        id="999999", backend="embedded", pid=999999, create_time=1.0, owner_pid=None, owner_create_time=None,
        http_url="http://127.0.0.1:1", grpc_url="grpc://127.0.0.1:2", metrics_url="http://127.0.0.1:3/metrics",
        repository="/nowhere", log_path=None, model_control_mode="none",
    )  # fmt: skip
    record.save()
    junk = record.path.with_name("junk.json")
    junk.write_text("{not json")
    assert all(r.id != "999999" for r in registry.records())
    assert not record.path.exists() and not junk.exists()


def test_orphaned_shared_memory_is_swept_and_live_regions_are_kept():
    import mmap

    from tritonlab.server.process import SHM_DIR, SHM_PREFIX, sweep_orphaned_shm

    def region(tag: str, age: float) -> Path:
        path = SHM_DIR / f"{SHM_PREFIX}tritonlab-test-{tag}-{os.getpid()}"
        path.write_bytes(b"\0" * 4096)
        os.utime(path, (time.time() - age, time.time() - age))
        return path

    orphan, fresh, mapped = region("orphan", 60), region("fresh", 0), region("mapped", 60)
    with mapped.open("r+b") as handle, mmap.mmap(handle.fileno(), 4096):
        try:
            removed = sweep_orphaned_shm(min_age=5.0)
            assert orphan.name in removed and not orphan.exists()
            assert fresh.exists() and mapped.exists()  # too young to judge; still in use
        finally:
            for path in (orphan, fresh, mapped):
                path.unlink(missing_ok=True)


def test_a_killed_owner_leaves_no_shared_memory_behind():
    from tritonlab.server.process import SHM_DIR, SHM_PREFIX

    owner, server_pid = start_owner("thread")  # no parent-death signal: the hard way
    # This server's regions by name (a diff of /dev/shm would count other servers starting on the machine meanwhile).
    procs = [psutil.Process(server_pid), *psutil.Process(server_pid).children(recursive=True)]
    maps = "".join(Path(f"/proc/{p.pid}/maps").read_text() for p in procs)
    ours = {p.name for p in SHM_DIR.glob(f"{SHM_PREFIX}*") if p.name in maps}
    assert ours, "the example's stub maps a shared-memory region"
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    os.kill(server_pid, signal.SIGKILL)  # Triton killed hard too: its stub's region is left mapped by nobody
    time.sleep(2.5)
    assert tritonlab("down", "--all").returncode == 0
    assert wait_for(lambda: not any((SHM_DIR / name).exists() for name in ours), timeout=10)
