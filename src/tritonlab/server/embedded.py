"""The embedded backend: the tritonserver from the nvidia-pytriton wheel, run as a child process.

No Docker, no GPU needed. How it must be started (each point was a real failure when missing):
- LD_LIBRARY_PATH holds the wheel's ``nvidia_pytriton.libs`` and the running interpreter's own libpython dir
  (else a pyenv Python's stub picks up the system libpython and models fail in threading code);
- the venv's ``bin/`` comes first on PATH: the python backend stub finds its environment through ``python3``;
- numpy < 2 in that environment, or every response fails with an output-size mismatch;
- every endpoint bound to 127.0.0.1 (Triton's default is 0.0.0.0), on free ports unless told otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from tritonlab.errors import EnvironmentProblem
from tritonlab.paths import logs_dir
from tritonlab.server import ports
from tritonlab.server.base import Server
from tritonlab.server.process import create_time, die_with_parent_preexec, stop_process_tree
from tritonlab.server.staging import StagedServer, stage


def check_numpy() -> str:
    try:
        version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        raise EnvironmentProblem(
            f"numpy is not installed in {sys.prefix}; the python backend needs it",
            fix=f"{sys.executable} -m pip install 'numpy<2'",
        ) from None
    if int(version.split(".")[0]) >= 2:
        raise EnvironmentProblem(
            f"numpy {version} is installed in {sys.prefix}; Triton 2.51's python backend needs numpy<2 "
            "(with 2.x every response fails with 'output tensor shape does not match size of output')",
            fix=f"{sys.executable} -m pip install 'numpy<2'   (env/setup.sh pins it)",
        )
    return version


def server_environment(staged: StagedServer, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    libpython_dir = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
    library_path = [str(staged.libs), libpython_dir]
    if env.get("LD_LIBRARY_PATH"):
        library_path.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(library_path)
    bin_dir = str(Path(sys.executable).parent)
    path = [bin_dir, *[p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]]
    # Triton starts each python backend stub through a shell: without these it never comes up (and says nothing)
    path += [p for p in ("/usr/local/bin", "/usr/bin", "/bin") if p not in path]
    env["PATH"] = os.pathsep.join(path)
    return env


class EmbeddedServer(Server):
    """tritonserver 2.51.0 from the nvidia-pytriton wheel, as a child process of this Python."""

    backend = "embedded"

    def __init__(self, repository: str | Path | None = None, **options: Any):
        super().__init__(repository, **options)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._create_time: float | None = None
        self._requested_ports = {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> str | None:
        return str(self._log_path) if self._log_path else None

    def command(self, staged: StagedServer) -> list[str]:
        cmd = [
            str(staged.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={staged.backends}",
            f"--cache-directory={staged.caches}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            *self.serving_args(),
        ]
        return cmd

    def _launch(self) -> None:
        staged = stage()
        check_numpy()
        for port in self._requested_ports.values():
            if port is not None:
                ports.ensure_free(port)
        free = iter(ports.free_ports(3))
        self.http_port, self.grpc_port, self.metrics_port = (
            p if p is not None else next(free) for p in self._requested_ports.values()
        )
        self._prune_logs()
        self._log_path = logs_dir() / f"tritonserver-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self)}.log"
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(staged),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(staged),
                cwd=str(self.repository),
                start_new_session=True,  # own process group: a notebook interrupt must not reach it
                preexec_fn=None if self.detach else die_with_parent_preexec(),
            )
        self._create_time = create_time(self._process.pid)

    def _port_was_picked(self, port: int) -> bool:
        chosen = {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}
        return any(self._requested_ports[k] is None and chosen[k] == port for k in chosen)

    def _exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def _terminate(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            stop_process_tree(self._process.pid, self._create_time, grace=self.exit_timeout + 5)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)  # its own session: Triton and its python stubs
            self._process.wait()

    def logs(self, tail: int | None = None) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def _register(self) -> None:
        assert self._process is not None
        self._save_record(str(self._process.pid), pid=self._process.pid, process_created=self._create_time)
