"""Faults a learner meets mid-lab, each against the real part: a tritonserver killed with SIGKILL (the out-of-memory
killer, `kill -9`), a Jupyter kernel killed while its server runs, a port taken, a full disk in the workspace, no
Prometheus, no dockerd. Each says what happened and how to recover, and recovering works.

Covered elsewhere and not repeated here: a requested port in use when a server starts (tests/server/test_backends.py,
test_requested_port_in_use_is_a_clear_error, per backend); an unreachable or forbidden Docker engine when a server
starts (tests/server/test_container.py, test_unreachable_engine_is_a_clear_error and
test_permission_denied_on_the_socket_is_a_clear_error); an owner's container removed by its reaper
(test_owner_killed_with_sigkill_its_container_is_removed_by_the_reaper); `server.kill()` then `restart()`
(test_a_killed_server_is_seen_as_down_and_restart_brings_it_back).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import VENV_BIN, add_sub_inputs, tritonserver_pids, wait_for
from tritonlab.checks import check
from tritonlab.checks.core import Status
from tritonlab.errors import DiskFull, EnvironmentProblem, PortInUseError, ServerCrashed, TritonLabError
from tritonlab.server import registry, start_server
from tritonlab.server.ports import free_ports
from tritonlab.server.process import SHM_DIR, SHM_PREFIX

STUB = "triton_python_backend_stub"
ADD_SUB_OUTPUT0 = [[0.0, 2.0, 4.0, 6.0]]  # add_sub(a, a) for a = [0, 1, 2, 3]


def tritonlab(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "tritonlab"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})  # fmt: skip


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def add_sub(server, client=None) -> np.ndarray:
    """add_sub(a, a) through ``client`` (default: server.http_client(), as the lab's hints write it)."""
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    client = client or server.http_client()
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    return client.infer("add_sub", add_sub_inputs(module, a, a)).as_numpy("OUTPUT0")


def tritonserver_host_pid(server) -> int:
    """The pid, in this machine's namespace, of the tritonserver process itself (in the container: its PID 1)."""
    if server.backend == "docker":
        from tritonlab.container import engine

        container = engine.connect().containers.get(server.container_id)
        pid = int(container.attrs["State"]["Pid"])
    else:
        pid = server.pid
    assert psutil.Process(pid).name() == "tritonserver"
    return pid


def stubs_of(pid: int) -> list[int]:
    return [c.pid for c in psutil.Process(pid).children(recursive=True) if c.name() == STUB]


def shm_regions_of(pids: list[int]) -> set[str]:
    """The python-backend shared-memory regions in /dev/shm that these processes map (a region killed processes
    leave behind stays until someone sweeps it)."""
    regions = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/maps").read_text()
            regions |= {line.rsplit("/", 1)[-1] for line in text.splitlines() if f"{SHM_DIR}/{SHM_PREFIX}" in line}
    return regions


def still_in_shm(regions: set[str]) -> set[str]:
    return {r for r in regions if (SHM_DIR / r).exists()}


def listening_ports() -> set[int]:
    return {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


# ---------------------------------------------------------------------------------------------- tritonserver killed
def test_a_tritonserver_killed_mid_lab_is_reported_with_the_fix_and_restart_recovers_on_the_same_ports(
    example_repo, backend, tmp_path
):
    http, grpc, metrics = free_ports(3)
    server = start_server(example_repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
    try:
        held = [server.http_client(), server.grpc_client()]  # `client = server.http_client()` in an earlier cell
        assert [add_sub(server, c).tolist() for c in held] == [ADD_SUB_OUTPUT0] * 2
        pid = tritonserver_host_pid(server)
        stubs = stubs_of(pid)
        assert stubs, "the example's python model runs in a stub process"
        regions = shm_regions_of([pid, *stubs])
        assert regions  # the stub's shared memory (docker: in the container's own /dev/shm, gone with it)
        os.kill(pid, signal.SIGKILL)  # from outside, as the out-of-memory killer does: no graceful unload
        assert wait_for(lambda: not server.running, timeout=20)

        # The learner's next call, whichever it is, names the crash and the fix (not 'Connection refused').
        with pytest.raises(ServerCrashed) as caught:
            add_sub(server)
        crash = caught.value
        assert "no longer running" in crash.message and "killed by SIGKILL" in crash.message
        assert "out-of-memory killer" in crash.message and str(http) in crash.message
        assert crash.fix is not None and "server.restart()" in crash.fix and "re-run the cell" in crash.fix
        assert "server.http_client()" in crash.fix
        assert crash.exit_code in (-9, 137)  # Popen's -signal, or Docker's 128 + signal
        for client in held:  # clients taken before the crash say the same
            with pytest.raises(ServerCrashed, match="killed by SIGKILL"):
                add_sub(server, client)
        for call in (lambda: server.model_stats("add_sub"), server.repository_index, server.metrics_text,
                     server.metadata, server.grpc_client):  # fmt: skip
            with pytest.raises(ServerCrashed, match="killed by SIGKILL"):
                call()
        assert "killed by SIGKILL" in repr(server)
        assert server.is_live() is False and server.is_ready() is False  # health probes answer, never raise
        # check() in the notebook: the card says the server crashed and how to bring it back.
        result = check("lab1.server_ready", workspace=tmp_path)
        assert result.status == Status.FAIL
        assert "killed by SIGKILL" in result.message and "server.restart()" in result.hint
        # A killed Triton's stubs do not linger.
        assert wait_for(lambda: not any(alive(s) for s in stubs), timeout=20), "python stubs outlived their server"

        server.restart()
        assert (server.http_port, server.grpc_port, server.metrics_port) == (http, grpc, metrics)
        assert add_sub(server).tolist() == ADD_SUB_OUTPUT0
        assert add_sub(server, server.grpc_client()).tolist() == ADD_SUB_OUTPUT0
        for client in held:  # closed by the restart: they say so and how to get a working one
            with pytest.raises(TritonLabError, match="closed when its server was stopped or restarted") as closed:
                add_sub(server, client)
            assert "server.http_client()" in (closed.value.fix or "")
        assert server.crash() is None and "running" in repr(server)
        assert check("lab1.server_ready", workspace=tmp_path).passed
        records = [r for r in registry.records() if r.http_url == server.http_url]
        assert len(records) == 1 and records[0].pid == server.pid  # the dead server's entry is gone
    finally:
        server.stop()
    assert still_in_shm(regions) == set(), "the killed server's shared memory was not swept"


def test_rerunning_the_start_cell_after_a_crash_serves_again_and_drops_the_dead_record(example_repo):
    # A notebook re-run: `server = start_server(...)` again, a new object; the crashed one is never stopped by hand.
    first = start_server(example_repo)
    try:
        os.kill(first.pid, signal.SIGKILL)
        assert wait_for(lambda: not first.running, timeout=10)
        assert (registry.servers_dir() / f"{first.pid}.json").exists()  # nothing removed it yet
        second = start_server(example_repo)
        try:
            assert add_sub(second).tolist() == ADD_SUB_OUTPUT0
            status = json.loads(tritonlab("status", "--json").stdout)
            assert [row["pid"] for row in status] == [second.pid]  # the dead server's record was dropped
            assert not (registry.servers_dir() / f"{first.pid}.json").exists()
            from tritonlab.server.base import crashed_server, current_server

            assert current_server() is second and crashed_server() is None  # check() inspects the new one
        finally:
            second.stop()
    finally:
        first.stop()  # what the kernel's atexit does with the crashed object: harmless
    assert first.crash() is None  # stopped on purpose: no longer reported as a crash


# ---------------------------------------------------------------------------------------------- a kernel killed
KERNEL_CELL = """
import json, os, threading
from tritonlab.server import start_server
server = start_server({repo!r})
main = threading.current_thread() is threading.main_thread()
print(json.dumps({{"pid": server.pid, "kernel": os.getpid(), "main": main}}))
"""


@contextlib.contextmanager
def ipykernel() -> Iterator[tuple[object, object]]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        with contextlib.suppress(Exception):
            km.shutdown_kernel(now=True)


def run_cell(kc, code: str) -> str:
    out: list[str] = []
    reply = kc.execute_interactive(code, timeout=180, output_hook=lambda m: out.append(m["content"].get("text", "")))
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def test_a_killed_jupyter_kernel_leaves_nothing_after_down_all(example_repo):
    """A real ipykernel runs the start cell, then dies by SIGKILL (the 'kernel died' a learner sees). Real behaviour:
    cells run in the kernel's main thread, so the parent-death signal stops Triton within seconds by itself; the
    registry entry stays until `tritonlab down --all`, which leaves no process, port, record or shared memory."""
    baseline = tritonserver_pids()
    with ipykernel() as (_km, kc):
        info = json.loads(run_cell(kc, KERNEL_CELL.format(repo=str(example_repo))).strip().splitlines()[-1])
        server_pid, kernel_pid = info["pid"], info["kernel"]
        assert info["main"] is True
        record = registry.get(str(server_pid))
        assert record is not None and record.owner_pid == kernel_pid
        ports = {int(url.rsplit(":", 1)[1].split("/")[0]) for url in (record.http_url, record.grpc_url,
                                                                        record.metrics_url)}  # fmt: skip
        stubs = stubs_of(server_pid)
        regions = shm_regions_of([server_pid, *stubs])
        assert ports <= listening_ports() and stubs and regions
        os.kill(kernel_pid, signal.SIGKILL)
        assert wait_for(lambda: not alive(kernel_pid), timeout=10)
        assert wait_for(lambda: not alive(server_pid), timeout=20), "Triton outlived its kernel"
    down = tritonlab("down", "--all", "--json")
    assert down.returncode == 0, down.stderr
    assert registry.get(str(server_pid)) is None and not (registry.servers_dir() / f"{server_pid}.json").exists()
    assert tritonserver_pids() - baseline == set()
    assert not any(alive(s) for s in stubs)
    assert wait_for(lambda: not ports & listening_ports(), timeout=10)
    assert still_in_shm(regions) == set()


OWNER = """
import json, sys, threading, time
from tritonlab.server import start_server

box = {}
def start():  # a worker thread: no parent-death signal is possible, only the registry knows
    box["server"] = start_server(sys.argv[1])
worker = threading.Thread(target=start)
worker.start()
worker.join()
server = box["server"]
reaper = server._reaper.pid if getattr(server, "_reaper", None) else None
print(json.dumps({"id": server._record.id, "pid": server.pid, "container": getattr(server, "container_id", None),
                  "reaper": reaper}), flush=True)
time.sleep(600)
"""


def test_a_dead_owners_server_is_stopped_by_the_next_up(example_repo, backend):
    """The owner dies so hard that nothing of its own can clean up (embedded: a server started from a worker thread,
    which has no parent-death signal; docker: the owner and its reaper both killed). The next `tritonlab up` stops
    the orphan and says so."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(example_repo)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    info = json.loads(owner.stdout.readline())
    if info["reaper"]:
        os.kill(info["reaper"], signal.SIGKILL)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    record = registry.get(info["id"])
    assert record is not None and record.orphaned
    orphan_url = record.http_url
    from tritonlab.server import RemoteServer

    assert RemoteServer(orphan_url).is_ready(), "the orphan still serves: nothing stopped it"

    up = tritonlab("up", "--detach", "--json", env={"TRITONLAB_BACKEND": "embedded"})
    try:
        assert up.returncode == 0, up.stderr
        said = " ".join(up.stderr.split())  # rich wraps long lines
        assert f"stopped server {info['id']} ({orphan_url}): the process that started it had died" in said
        assert registry.get(info["id"]) is None
        assert not RemoteServer(orphan_url).is_live()
        if info["pid"]:
            assert wait_for(lambda: not alive(info["pid"]), timeout=10)
        if info["container"]:
            from tritonlab.container import engine

            assert engine.container_exists(info["container"]) is False
    finally:
        assert tritonlab("down").returncode == 0  # the detached one


# ---------------------------------------------------------------------------------------------- port taken
def test_up_on_a_taken_port_is_a_clear_cli_error_naming_the_holder():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = tritonlab("up", "--http-port", str(port), "--json")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
        assert f"pid {os.getpid()}" in result.stderr and "fix:" in result.stderr
        assert registry.records() == []
    finally:
        holder.close()


def test_restart_after_a_crash_when_another_program_took_the_port_says_so(example_repo):
    http = free_ports(1)[0]
    server = start_server(example_repo, http_port=http)
    holder = socket.socket()
    try:
        os.kill(server.pid, signal.SIGKILL)
        assert wait_for(lambda: not server.running, timeout=10)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", http))  # another program grabs the port the dead server held
        holder.listen()
        with pytest.raises(PortInUseError) as caught:
            server.restart()
        assert caught.value.port == http and f"pid {os.getpid()}" in str(caught.value)
        assert not server.running and registry.records() == []
        holder.close()
        server.restart()  # freed again: recovers
        assert server.http_port == http and add_sub(server).tolist() == ADD_SUB_OUTPUT0
    finally:
        holder.close()
        server.stop()


# ---------------------------------------------------------------------------------------------- disk full
@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs mounted for the test (root only); a filler file is sized by the test to fill it."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount)],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}): needs root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> None:
    """Take every free byte of ``disk`` (a filler file), as a big download or a runaway log would."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * chunk):
                    pass
    finally:
        os.close(fd)
    assert shutil.disk_usage(disk).free == 0


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "filler"}  # fmt: skip


def test_full_workspace_checkpoint_state_is_a_clear_error_and_earlier_work_is_intact(full_disk, monkeypatch):
    from tritonlab.checks import store, submit

    workspace = full_disk / "lab"
    submit("lab1.http_inference", workspace, output0=[1.0, 2.0])
    store.record_results(workspace, [check_result()])
    before = snapshot(workspace)
    fill(full_disk)
    with pytest.raises(DiskFull) as caught:
        submit("lab1.http_inference", workspace, output0=list(range(50_000)))  # a big value: no room for it
    message = caught.value.message
    assert "no space left on the disk that holds" in message and str(workspace / ".tritonlab") in message
    assert "your checkpoint state (submissions.json)" in message and "unchanged" in message
    assert "df -h" in caught.value.fix
    assert snapshot(workspace) == before, "earlier submissions/progress changed or a temp file was left"
    card = check("lab1.http_inference", workspace=workspace, output0=list(range(50_000)))  # the notebook's way
    assert card.status == Status.ERROR and "no space left on the disk" in card.message and "df -h" in card.hint
    assert json.loads((workspace / ".tritonlab" / "submissions.json").read_text())["lab1.http_inference"]
    # The isolated checker still gives its verdict; only saving the progress history fails, and it says so.
    monkeypatch.chdir(workspace)
    result = check("lab2.configs_valid", workspace=workspace)
    assert result.status in (Status.FAIL, Status.UNATTEMPTED), result.message
    assert "not saved to your progress: no space left" in result.message
    assert snapshot(workspace) == before
    (full_disk / "filler").unlink()  # space again: the same step works
    submit("lab1.http_inference", workspace, output0=[3.0])
    assert store.load_submissions(workspace)["lab1.http_inference"]["output0"]


def check_result():
    from tritonlab.checks.core import Result

    return Result(id="lab1.metadata", title="t", status=Status.PASS, message="ok", hint="", points=1, awarded=1,
                  seconds=0.1)  # fmt: skip


def test_full_workspace_staging_a_repository_is_a_clear_error(full_disk):
    from tritonlab.labs import lab2, lab4

    kept = full_disk / "kept_repo"
    lab2.prepare_repository(kept)
    before = snapshot(kept)
    fill(full_disk)
    for prepare, lab in ((lab2.prepare_repository, "lab 2"), (lab4.prepare_repository, "lab 4")):
        with pytest.raises(DiskFull) as caught:
            prepare(full_disk / f"new_{lab[-1]}")
        assert f"could not write the {lab} model repository" in caught.value.message
        assert str(full_disk / f"new_{lab[-1]}") in caught.value.message and "df -h" in caught.value.fix
    assert snapshot(kept) == before


def test_full_disk_writing_a_results_file_is_a_clear_error_and_the_old_results_stay(full_disk):
    from tritonlab.bench.runner import append_results
    from tritonlab.bench.table import BenchRow, BenchTable

    path = full_disk / "results.json"
    row = BenchRow(
        tool="builtin",
        protocol="http",
        model="add_sub",
        concurrency=1,
        request_rate=None,
        throughput=900.0,
        p50_ms=1.0,
        p90_ms=1.5,
        p95_ms=1.7,
        p99_ms=2.0,
        avg_ms=1.1,
        requests=9000,
        errors=0,
        window_s=10.0,
    )
    append_results(path, [row])
    before = path.read_bytes()
    fill(full_disk)
    with pytest.raises(DiskFull) as caught:
        append_results(path, [row] * 2000)
    assert "could not write the results file results.json" in caught.value.message
    assert path.read_bytes() == before and sorted(p.name for p in full_disk.iterdir()) == ["filler", "results.json"]
    assert len(BenchTable.load(path).rows) == 1


def test_full_cache_disk_staging_the_server_is_a_clear_error_and_leaves_no_half_copy(full_disk, monkeypatch):
    cache = full_disk / "cache"
    monkeypatch.setenv("TRITONLAB_CACHE_DIR", str(cache))
    result = tritonlab("up", "--json", env={"TRITONLAB_CACHE_DIR": str(cache)}, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "no space left on the disk that holds" in result.stderr and "the staged tritonserver" in result.stderr
    assert "df -h" in result.stderr
    assert [p.name for p in (cache / "tritonserver").iterdir()] == []  # the half copy was removed
    assert registry.records() == []


# ---------------------------------------------------------------------------------------------- damaged cache
@pytest.mark.parametrize("removed", ["backends/python/triton_python_backend_stub", ".tritonlab-staged"])
def test_a_damaged_staged_server_is_staged_again_by_the_next_start(tmp_path, monkeypatch, removed):
    # A cache cleaned by hand, or half lost: with the stub gone every start failed ("triton_python_backend_stub is
    # not found", told to fix a model that was fine) until the learner found and deleted the cache.
    from tritonlab.server.staging import stage

    monkeypatch.setenv("TRITONLAB_CACHE_DIR", str(tmp_path / "cache"))
    staged = stage()
    (staged.root / removed).unlink()
    with start_server() as server:
        assert add_sub(server).tolist() == ADD_SUB_OUTPUT0
    assert stage().complete() and (staged.root / removed).is_file()
    assert [p.name for p in staged.root.parent.iterdir()] == [staged.root.name]  # nothing set aside is left


# ---------------------------------------------------------------------------------------------- Prometheus absent
def test_without_prometheus_lab4_says_what_is_missing_and_the_rest_still_works(tmp_path, monkeypatch):
    from tritonlab.labs.lab4 import RULES
    from tritonlab.monitor import Prometheus

    no_prometheus = {"PATH": str(VENV_BIN)}  # the venv's tools only: no /usr/bin/prometheus, no promtool
    with start_server() as server:  # (Triton itself needs /bin on PATH to run its python stubs)
        monkeypatch.setenv("PATH", no_prometheus["PATH"])
        with pytest.raises(EnvironmentProblem) as caught:
            Prometheus(server.metrics_url).start()
        assert "prometheus is not installed: lab 4 needs a Prometheus server" in caught.value.message
        assert "apt-get install prometheus" in caught.value.fix
        cli = tritonlab("monitor", "up", "--server", server.metrics_url, "--detach", env=no_prometheus)
        assert cli.returncode == 1 and "Traceback" not in cli.stderr
        assert "prometheus is not installed" in cli.stderr and "apt-get install prometheus" in cli.stderr
        assert json.loads(tritonlab("monitor", "status", "--json").stdout) == []
        # The checkpoints that need promtool fail with the same fix; they do not crash.
        (tmp_path / RULES).write_text("groups: []\n")
        for checkpoint in ("lab4.rules_valid", "lab4.alerts_fire"):
            result = check(checkpoint, workspace=tmp_path)
            assert result.status == Status.FAIL and "promtool is not installed" in result.message, result.message
        # What does not need Prometheus still works: Triton's own metrics endpoint.
        assert "nv_inference_count" in server.metrics_text()


# ---------------------------------------------------------------------------------------------- dockerd absent
def test_without_dockerd_every_command_says_so_and_none_crashes(tmp_path, example_repo):
    dead = {"DOCKER_HOST": f"unix://{tmp_path}/no-dockerd.sock", "TRITONLAB_TEST_DOCKER_HOST": ""}
    # A docker server registered while dockerd ran, then dockerd stopped: status and down must still answer.
    record = registry.ServerRecord(
        id="0123456789ab", backend="docker", pid=None, create_time=None, owner_pid=None, owner_create_time=None,
        http_url="http://127.0.0.1:1", grpc_url="grpc://127.0.0.1:2", metrics_url="http://127.0.0.1:3/metrics",
        repository=str(example_repo), log_path=None, model_control_mode="none",
        extra={"container": "0123456789ab" * 5, "docker_host": dead["DOCKER_HOST"], "image": "x"},
    )  # fmt: skip
    record.save()
    try:
        up = tritonlab("up", "--backend", "docker", "--repo", str(example_repo), env=dead)
        assert up.returncode == 1 and "Traceback" not in up.stderr
        assert "not reachable" in up.stderr and "systemctl start docker" in up.stderr
        image = tritonlab("image", "status", "--json", env=dead)
        assert image.returncode == 1 and "not reachable" in image.stderr and "Traceback" not in image.stderr
        status = tritonlab("status", "--json", env=dead)
        assert status.returncode == 0, status.stderr
        assert [(row["id"], row["live"]) for row in json.loads(status.stdout)] == [(record.id, False)]
        # Nobody can say whether its container still exists: not reported as stopped, and its record is kept
        down = tritonlab("down", "--all", "--json", env=dead)
        assert down.returncode == 0, down.stderr
        assert json.loads(down.stdout) == {"stopped": [], "skipped": [], "strays": 0, "unreachable": [record.id]}
        assert [r.id for r in registry.records()] == [record.id]
        said = tritonlab("down", "--all", env=dead)
        assert said.returncode == 0 and "is not reachable" in said.stdout and "Its record is kept" in said.stdout
    finally:
        record.remove()
