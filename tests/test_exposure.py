"""Exposure: every socket the helper opens listens on 127.0.0.1 only, asserted with psutil on the real processes:
embedded Triton (and its python backend stubs), JupyterLab as `tritonlab lab` (what `make lab` runs) starts it and
the kernels it starts, Prometheus, and the docker backend's port publishes (and the private dockerd). The lab 3 naive
baseline server is checked where its test starts one (tests/labs/test_naive_server.py). JupyterLab answers nothing
without its token."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import urllib.error
import urllib.request

import psutil
import pytest

from conftest import REPO_ROOT, jupyterlab, wait_for


def command_line(proc: psutil.Process) -> str:
    """The command line; empty for a process that ended between the listing and the look (Jupyter starts helpers)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, including an IPv6 socket bound to the v4-mapped ::ffff:127.0.0.1."""
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket and bound UDP socket of ``pid`` and all its descendants."""
    found = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN or (conn.type == 2 and not conn.raddr):  # SOCK_DGRAM
                        found.add((conn.laddr.ip, conn.laddr.port))
    return found


def assert_loopback_only(pid: int, expected_ports: set[int], what: str) -> set[tuple[str, int]]:
    sockets = listening(pid)
    assert expected_ports <= {port for _, port in sockets}, f"{what}: {sockets} lacks {expected_ports}"
    exposed = {s for s in sockets if not is_loopback(s[0])}
    assert not exposed, f"{what} listens beyond this machine: {exposed}"
    return sockets


def nothing_else_on(ports: set[int]) -> None:
    """No socket of any process on this machine listens on these ports on a non-loopback address."""
    wide = [(c.laddr, c.pid) for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port in ports and not is_loopback(c.laddr.ip)]  # fmt: skip
    assert not wide, wide


def test_embedded_triton_and_prometheus_listen_on_loopback_only(server):
    from tritonlab.monitor import Prometheus, prometheus_available

    triton_ports = {server.http_port, server.grpc_port, server.metrics_port}
    sockets = assert_loopback_only(server.pid, triton_ports, "tritonserver")
    nothing_else_on(triton_ports)
    if not prometheus_available():
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (env/system.sh installs it)")
        pytest.skip("prometheus is not installed")
    with Prometheus(server) as prom:
        assert prom.wait_first_scrape() > 0
        prom_sockets = assert_loopback_only(prom.pid, {prom.port}, "prometheus")
        nothing_else_on({prom.port})
    print(f"exposure: tritonserver {sorted(sockets)}, prometheus {sorted(prom_sockets)}")


def request(url: str, token: str | None = None, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    """(status, Location header or body) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    headers = {"Authorization": f"token {token}"} if token else {}
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=body, method=method, headers=headers), timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location") or e.read().decode(errors="replace")


@pytest.mark.slow
def test_jupyterlab_and_its_kernels_listen_on_loopback_only_and_require_the_token():
    with jupyterlab(REPO_ROOT / "labs") as (url, token, port):
        base = f"http://127.0.0.1:{port}"
        # Without the token: the API refuses, the UI sends to the login page; a wrong token is no token.
        assert request(f"{base}/api/contents")[0] == 403
        assert request(f"{base}/api/kernels", method="POST", body=b"{}")[0] == 403
        status, location = request(f"{base}/lab")
        assert status == 302 and location.startswith("/login"), (status, location)
        assert request(f"{base}/api/contents", token="0" * 48)[0] == 403
        assert request(f"{base}/lab?token={'0' * 48}")[0] == 302
        # With it: the UI and the API answer.
        assert request(url)[0] == 200
        status, listing = request(f"{base}/api/contents", token=token)
        assert status == 200 and "01_setup.ipynb" in listing
        # A kernel started through the API (what opening a notebook does) binds its five ZMQ ports on loopback too.
        status, body = request(f"{base}/api/kernels", token=token, method="POST", body=b'{"name": "python3"}')
        assert status == 201, body
        kernel = json.loads(body)["id"]
        server_pid = next(c.pid for c in psutil.net_connections(kind="tcp")
                          if c.status == psutil.CONN_LISTEN and c.laddr.port == port)  # fmt: skip
        try:
            kernels = lambda: [p for p in psutil.Process(server_pid).children(recursive=True)  # noqa: E731
                               if "ipykernel" in command_line(p)]  # fmt: skip
            assert wait_for(lambda: kernels() and len(listening(kernels()[0].pid)) >= 5, timeout=60)
            sockets = assert_loopback_only(server_pid, {port}, "jupyterlab and its kernel")
            assert len(sockets) >= 6  # the server's port and the kernel's shell, iopub, stdin, control, heartbeat
            nothing_else_on({p for _, p in sockets})
        finally:
            request(f"{base}/api/kernels/{kernel}", token=token, method="DELETE")
    print(f"exposure: jupyterlab + kernel {sorted(sockets)}")


def test_docker_port_publishes_and_the_engine_stay_on_loopback(cpu_image, no_leaked_containers, docker_engine):
    from tritonlab.container import engine
    from tritonlab.server import start_server

    with start_server(backend="docker") as server:
        ports = {server.http_port, server.grpc_port, server.metrics_port}
        bindings = engine.connect().containers.get(server.container_id).attrs["HostConfig"]["PortBindings"]
        assert {b["HostIp"] for port in bindings.values() for b in port} == {"127.0.0.1"}
        # What the host really listens on for the published ports (docker-proxy, or nothing with iptables-only NAT
        # where the kernel forwards): never a wildcard or outside address.
        published = [c for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]  # fmt: skip
        assert all(is_loopback(c.laddr.ip) for c in published), published
        assert server.is_ready()  # reachable on 127.0.0.1 all the same
    if docker_engine.startswith("unix://") and "tritonlab-dockerd-" in docker_engine:  # the private engine we started
        dockerd = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "dockerd"
                   and any(docker_engine in a for a in p.info["cmdline"] or [])]  # fmt: skip
        assert dockerd and all(not listening(p.pid) for p in dockerd)  # a unix socket only, no TCP port
