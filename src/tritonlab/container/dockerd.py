"""A private Docker engine: dockerd with its data root, exec root, pidfile and socket in one directory.

For machines where no engine runs (CI, the benchmark scripts on a fresh machine): nothing of the system's Docker
state is touched, and the daemon is stopped by PID when the ``with`` block ends. Needs root and Debian's docker.io.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tritonlab.container.engine import DockerUnavailable
from tritonlab.server.process import die_with_parent_preexec

SYSTEM_SOCKET = "/var/run/docker.sock"


def system_engine() -> str | None:
    """unix:///var/run/docker.sock if an engine answers there, else None."""
    if not os.path.exists(SYSTEM_SOCKET):
        return None
    try:
        import docker

        docker.DockerClient(base_url=f"unix://{SYSTEM_SOCKET}", version="auto", timeout=5).ping()
        return f"unix://{SYSTEM_SOCKET}"
    except Exception:
        return None


@contextlib.contextmanager
def private_dockerd(root: Path | None = None, timeout: float = 90.0) -> Iterator[str]:
    """Start dockerd in ``root`` (default: a new dir under /var/tmp), yield its DOCKER_HOST, stop it by PID."""
    if shutil.which("dockerd") is None:
        raise DockerUnavailable("dockerd is not installed", fix="sudo apt-get install docker.io")
    if os.geteuid() != 0:
        raise DockerUnavailable(
            "starting a private dockerd needs root", fix="run as root, or start Docker as a service"
        )
    owned_root = root is None
    # /var/tmp, not a small /tmp tmpfs: images and layers take hundreds of MB.
    root = root or Path(
        tempfile.mkdtemp(prefix="tritonlab-dockerd-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    )
    host = f"unix://{root / 'docker.sock'}"
    with open(root / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(
            ["dockerd", f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
             f"--pidfile={root / 'dockerd.pid'}", f"--host={host}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent_preexec(),  # a killed test run or benchmark takes its daemon with it
        )  # fmt: skip
    try:
        _wait_for_engine(host, proc, root, timeout)
        yield host
    finally:
        _stop_by_pid(proc)
        if owned_root:
            shutil.rmtree(root, ignore_errors=True)


def _wait_for_engine(host: str, proc: subprocess.Popen[bytes], root: Path, timeout: float) -> None:
    import docker

    deadline = time.monotonic() + timeout
    while True:
        try:
            docker.DockerClient(base_url=host, version="auto", timeout=5).ping()
            return
        except Exception as e:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (root / "dockerd.log").read_text(errors="replace")[-3000:]
                raise DockerUnavailable(f"dockerd did not come up ({e}):\n{log}",
                                        fix="read dockerd's log above") from None  # fmt: skip
            time.sleep(0.2)


def _stop_by_pid(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # dockerd stops its containerd and unmounts its layers on SIGTERM
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
