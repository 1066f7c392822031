"""Many start/stop cycles leave nothing behind: 100 of the embedded server, 20 of the docker backend, on the shipped
example repository (one python model, so every cycle also starts and must reap a python backend stub and its shared
memory). Asserted by diffing, before and after: processes (tritonserver, python stubs, reapers, docker-proxy),
containers, listening sockets, files in a private temp dir, the registry, staging leftovers and the logs kept."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from conftest import wait_for
from tritonlab.paths import cache_dir, logs_dir, servers_dir
from tritonlab.server import start_server
from tritonlab.server.process import SHM_DIR, SHM_PREFIX
from tritonlab.server.staging import staged_root_dir

CYCLES = {"embedded": 100, "docker": 20}
STUB = "triton_python_backend_stub"
TIMINGS: dict[str, float] = {}


def our_processes() -> dict[int, str]:
    """Processes this test session's servers consist of: tritonserver and its python stubs run binaries staged under
    the session's temp root (embedded); reapers and docker-proxies name this session's cache dir or our ports."""
    root = os.environ["TRITONLAB_TEST_ROOT"]
    cache = str(cache_dir())
    found = {}
    for proc in psutil.process_iter(["name", "exe", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            name, exe, cmdline = proc.info["name"], proc.info["exe"] or "", " ".join(proc.info["cmdline"] or ())
            if (name in ("tritonserver", STUB) and exe.startswith(root)) or (
                "tritonlab.container.reaper" in cmdline and cache in cmdline
            ):
                found[proc.pid] = f"{name}: {cmdline[:160]}"
    return found


def docker_proxies(ports: set[int]) -> list[str]:
    """docker-proxy processes publishing one of ``ports`` on the host."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            args = proc.info["cmdline"] or []
            if (
                proc.info["name"] == "docker-proxy"
                and "-host-port" in args
                and (int(args[args.index("-host-port") + 1]) in ports)
            ):
                found.append(" ".join(args))
    return found


def listening(ports: set[int]) -> set[int]:
    return {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN} & ports


def unmapped_shm(regions: set[str]) -> set[str]:
    """Of ``regions`` (names in /dev/shm), those still there."""
    return {r for r in regions if (SHM_DIR / r).exists()}


def shm_of(pids: list[int]) -> set[str]:
    regions = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                if f"{SHM_DIR}/{SHM_PREFIX}" in line:
                    regions.add(line.rsplit("/", 1)[-1])
    return regions


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp dir of this test's own for everything the cycles start (TMPDIR is inherited by tritonserver, its stubs
    and the reapers; tempfile in this Python too): whatever they leave in a temp dir is left here."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.mark.timeout(1500)  # 100 embedded cycles: about 2.5 s each on 2 idle cores (a start waits for the stub)
def test_start_stop_cycles_leave_no_process_container_port_or_file_behind(example_repo, backend, private_tmp):
    cycles = CYCLES[backend]
    start_server(example_repo).stop()  # warm: staging and the image check happen once, before the baseline
    processes_before = our_processes()
    staged_before = files(staged_root_dir())
    records_before = files(servers_dir())
    containers = None
    if backend == "docker":
        from tritonlab.container import engine

        client = engine.connect()
        containers = lambda: {c.id for c in engine.own_containers(client, any_cache=True)}  # noqa: E731
        containers_before = containers()

    used_ports: set[int] = set()
    regions: set[str] = set()
    started = time.monotonic()
    for i in range(cycles):
        server = start_server(example_repo)
        try:
            assert server.running and server.model_ready("add_sub"), f"cycle {i}: not serving"
            ports = {server.http_port, server.grpc_port, server.metrics_port}
            used_ports |= ports
            if i == 0:  # the probes below do see a running server's parts (so their silence later means gone)
                running = set(our_processes().values()) - set(processes_before.values())
                assert listening(ports) == ports
                if backend == "docker":
                    assert any("reaper" in d for d in running) and len(docker_proxies(ports)) >= 3, running
                else:
                    assert {d.split(":")[0] for d in running} == {"tritonserver", STUB}, running
            if backend == "embedded":
                stubs = [c.pid for c in psutil.Process(server.pid).children() if c.name() == STUB]
                assert stubs, f"cycle {i}: no python stub"
                regions |= shm_of([server.pid, *stubs])
        finally:
            server.stop()
        assert not server.running
        if (i + 1) % 10 == 0:
            print(f"{backend}: {i + 1} cycles in {time.monotonic() - started:.1f} s", flush=True)
    elapsed = time.monotonic() - started
    TIMINGS[backend] = elapsed
    print(f"\n{cycles} {backend} start/stop cycles: {elapsed:.1f} s ({elapsed / cycles:.2f} s each)")

    leaked = lambda: {p: d for p, d in our_processes().items() if p not in processes_before}  # noqa: E731
    assert wait_for(lambda: not leaked(), timeout=20), f"processes left behind: {leaked()}"
    assert wait_for(lambda: not listening(used_ports), timeout=20), f"ports still listening: {listening(used_ports)}"
    assert docker_proxies(used_ports) == []
    if containers is not None:
        assert containers() - containers_before == set(), "containers left behind"
        client.close()
    if backend == "embedded":
        assert len(regions) >= cycles, "each cycle's stub maps a shared-memory region of its own"
        assert unmapped_shm(regions) == set(), "python backend shared memory left in /dev/shm"
    assert list(private_tmp.iterdir()) == [], "temp files left behind"
    assert files(staged_root_dir()) == staged_before, "staging leftovers (.staging-*) or a second staged copy"
    assert files(servers_dir()) == records_before, "registry entries left behind"
    logs = list(logs_dir().glob("tritonserver-*.log"))
    assert len(logs) <= 40 + 1, f"{len(logs)} server logs kept: pruning must bound them"
