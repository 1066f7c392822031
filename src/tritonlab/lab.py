"""Open the course: JupyterLab on labs/, bound to 127.0.0.1, with a token, stopped cleanly with its owner."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tritonlab.errors import TritonLabError
from tritonlab.server.ports import HOST, ensure_free, free_ports
from tritonlab.server.process import die_with_parent_preexec, stop_process_tree

DEFAULT_PORT = 8888


def choose_port(requested: int | None) -> int:
    if requested:
        ensure_free(requested)
        return requested
    try:
        ensure_free(DEFAULT_PORT)
        return DEFAULT_PORT
    except TritonLabError:
        return free_ports(1)[0]


def jupyter_command(root: Path, port: int, token: str) -> list[str]:
    # Containers and CI run as root; Jupyter refuses that unless told.
    as_root = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
    return [
        sys.executable, "-m", "jupyterlab", *as_root,
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
    ]  # fmt: skip


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TritonLabError(
                f"JupyterLab exited with code {process.returncode} during start-up", fix="read its output above"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TritonLabError(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


def run_lab(root: Path, port: int | None = None, token: str | None = None, timeout: float = 120.0) -> int:
    """Start JupyterLab, print its URL once it answers, and run until interrupted (Ctrl-C or SIGTERM)."""
    if not root.is_dir():
        raise TritonLabError(f"{root} is not a directory", fix="run `make lab` from the course checkout")
    port = choose_port(port)
    token = token or secrets.token_hex(24)
    url = f"http://{HOST}:{port}/lab?token={token}"
    process = subprocess.Popen(
        jupyter_command(root, port, token),
        start_new_session=True,  # our Ctrl-C handling stops it; Jupyter's own prompt would ask "y/n"
        preexec_fn=die_with_parent_preexec(),
    )
    stop_requested = False

    def request_stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    try:
        wait_until_up(url, process, timeout)
        print(f"\n  tritonlab course is open:  {url}", flush=True)
        print("  (Ctrl-C stops JupyterLab and the servers its notebooks started)\n", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        print("\nstopping JupyterLab ...", flush=True)
        return 0
    finally:
        # SIGTERM lets Jupyter shut its kernels down; their atexit handlers stop the Triton servers they own.
        stop_process_tree(process.pid, None, grace=15)
