"""The docker backend: Triton in a container started through docker-py.

Same ``Server`` interface as the embedded backend. The container runs the image from the manifest (the CPU image
`tritonlab image build` makes with no registry, or NGC's image for GPU learners), serves the repository
bind-mounted read-only at the same path, and publishes its three ports on 127.0.0.1 only (free host ports picked
by the engine unless asked for). It carries labels so `tritonlab down --all` finds it, and a reaper process
removes it if the Python that started it dies without stopping it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tritonlab import versions
from tritonlab.container import engine
from tritonlab.errors import PortInUseError, TritonLabError
from tritonlab.paths import logs_dir
from tritonlab.server import ports
from tritonlab.server.base import Server
from tritonlab.server.process import create_time

CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


class ImageMissing(TritonLabError):
    """The image is not in the local engine and cannot be pulled."""


class NoGpuRuntime(TritonLabError):
    """GPUs were asked for but the engine has no NVIDIA runtime."""


def default_image(gpus: bool) -> str:
    manifest = versions.manifest()
    return manifest["triton"]["ngc_image"] if gpus else manifest["docker"]["cpu_image"]


class DockerServer(Server):
    """tritonserver in a Docker container (docker-py), reached on 127.0.0.1."""

    backend = "docker"

    def __init__(
        self,
        repository: str | Path | None = None,
        *,
        image: str | None = None,
        gpus: bool | int | str | list[str] | None = None,
        shm_size: str = "1g",
        pull: bool = True,
        mounts: dict[str | Path, str | Path] | None = None,
        **options: Any,
    ):
        super().__init__(repository, **options)
        if not _valid_gpus(gpus):
            raise TritonLabError(
                f"gpus={gpus!r} is not a GPU selection",
                fix="use gpus='all' (or True), a count such as 2, or device ids such as '0,1' or ['0', '1']",
            )
        self.gpus = gpus
        self.image = image or os.environ.get("TRITONLAB_IMAGE") or default_image(bool(gpus))
        self.shm_size = shm_size
        self.pull = pull
        # extra host directories the models need (e.g. a TensorRT-LLM engine), bind-mounted read-only at the given path
        self.mounts = {str(Path(h).expanduser().resolve()): str(c) for h, c in (mounts or {}).items()}
        self.docker_host = engine.docker_host()
        self._docker: Any = None
        self._container: Any = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._requested_ports = {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}

    # ------------------------------------------------------------------ what the container runs
    @property
    def container_id(self) -> str | None:
        return self._container.id if self._container is not None else None

    @property
    def log_path(self) -> str | None:
        return str(self._log_path) if self._log_path else None

    def command(self) -> list[str]:
        # Inside its own network namespace Triton must listen on the container's interface (0.0.0.0 there);
        # the host side of every port is published on 127.0.0.1 only.
        cmd = [
            "tritonserver",
            f"--model-repository={self.repository}",
            f"--http-port={CONTAINER_PORTS['http']}",
            f"--grpc-port={CONTAINER_PORTS['grpc']}",
            f"--metrics-port={CONTAINER_PORTS['metrics']}",
            *self.serving_args(),
        ]
        return cmd

    def _device_requests(self) -> list[Any] | None:
        if not self.gpus:
            return None
        import docker.types

        if self.gpus is True or self.gpus == "all":
            return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        if isinstance(self.gpus, int):
            return [docker.types.DeviceRequest(count=self.gpus, capabilities=[["gpu"]])]
        ids = self.gpus.split(",") if isinstance(self.gpus, str) else list(self.gpus)
        return [docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]

    # ------------------------------------------------------------------ Server backend methods
    def _launch(self) -> None:
        import docker.errors

        for port in self._requested_ports.values():
            if port is not None:
                ports.ensure_free(port)
        self._docker = self._docker or engine.connect(self.docker_host)
        self._ensure_image()
        owner = None if self.detach else os.getpid()
        owner_created = create_time(owner) if owner else None
        # (host,) lets the engine pick a free host port itself: no race between choosing and binding.
        published = {
            f"{port}/tcp": (self.host, self._requested_ports[key]) if self._requested_ports[key] else (self.host,)
            for key, port in CONTAINER_PORTS.items()
        }
        volumes = {str(self.repository): {"bind": str(self.repository), "mode": "ro"}}
        volumes.update({host: {"bind": inside, "mode": "ro"} for host, inside in self.mounts.items()})
        try:
            self._container = self._docker.containers.create(
                self.image,
                self.command(),
                name=f"tritonlab-{os.getpid()}-{int(time.time() * 1000) % 10**8}",
                labels=engine.owner_labels(owner, owner_created),
                ports=published,
                volumes=volumes,
                working_dir=str(self.repository),
                shm_size=self.shm_size,
                device_requests=self._device_requests(),
                detach=True,
            )
            self._prune_logs()  # a learner on the docker backend alone must not collect a log per start forever
            self._log_path = (
                logs_dir() / f"tritonserver-{time.strftime('%Y%m%d-%H%M%S')}-{self._container.short_id}.log"
            )
            self._log_path.touch()  # log_path names a file from the start; the reaper appends as the log grows
            self._container.start()
        except docker.errors.APIError as e:
            raise self._start_error(e) from None  # start() terminates: the created container is removed
        self._start_reaper(owner, owner_created)  # first thing once it runs: the owner may die any time now
        self._container.reload()
        for key in CONTAINER_PORTS:
            setattr(self, f"{key}_port", _host_port(self._container, CONTAINER_PORTS[key]))

    def _ensure_image(self) -> None:
        import docker.errors

        try:
            self._docker.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            pass
        build_hint = "build the CPU image here, no registry needed: `tritonlab image build`"
        if self.image == versions.manifest()["docker"]["cpu_image"]:
            raise ImageMissing(f"the image {self.image} is not in the Docker engine at {self.docker_host}",
                               fix=build_hint)  # fmt: skip
        if not self.pull:
            raise ImageMissing(f"the image {self.image} is not in the Docker engine at {self.docker_host}",
                               fix=f"docker pull {self.image}; or {build_hint} and pass image=None")  # fmt: skip
        try:
            _pull_with_progress(self._docker, self.image)
        except (docker.errors.APIError, docker.errors.DockerException, OSError) as e:
            raise ImageMissing(
                f"the image {self.image} is not in the Docker engine at {self.docker_host} and pulling it failed: "
                f"{_first_line(e)}",
                fix=f"on a machine with network: docker pull {self.image} (NGC images may need `docker login nvcr.io`;"
                f" move it with docker save/load); or {build_hint}",
            ) from None

    def _start_error(self, error: Exception) -> TritonLabError:
        text = str(error)
        if engine.lacks_gpu_runtime(error):
            return NoGpuRuntime(
                f"GPUs were asked for (gpus={self.gpus!r}) but the Docker engine at {self.docker_host} has no NVIDIA "
                f"runtime: {_first_line(error)}",
                fix=f"{engine.NVIDIA_TOOLKIT_FIX}, or leave gpus out to serve on the CPU",
            )
        for port in self._requested_ports.values():
            if port is not None and str(port) in text and ("allocated" in text or "in use" in text):
                return PortInUseError(port, holder=f"another program (Docker says: {_first_line(error)})")
        return TritonLabError(f"Docker could not start the Triton container: {_first_line(error)}",
                              fix="see the message above; `docker info` shows the engine's state")  # fmt: skip

    def _start_reaper(self, owner: int | None, owner_created: float | None) -> None:
        cmd = [sys.executable, "-m", "tritonlab.container.reaper", self._container.id, "--host", self.docker_host]
        if self._log_path is not None:
            cmd += ["--log", str(self._log_path)]
        if owner is not None:
            cmd += ["--owner-pid", str(owner), "--owner-created", repr(owner_created)]
        self._reaper = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def _exit_code(self) -> int | None:
        import docker.errors

        if self._container is None:
            return None
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return -1  # removed behind our back (tritonlab down --all, docker rm -f)
        state = self._container.attrs.get("State", {})
        return None if state.get("Running") or state.get("Status") == "created" else int(state.get("ExitCode", -1))

    def _kill(self) -> None:
        import docker.errors

        if self._container is not None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):  # already gone or stopped
                self._container.kill()

    def _terminate(self) -> None:
        if self._container is not None:
            # SIGTERM, then SIGKILL after 1 s: stubs and shared memory die with the container's namespace anyway.
            engine.stop(self._container, grace=1)
        self._stop_reaper()  # before the log is written whole: the reaper appends to the same file
        if self._container is not None:
            self._save_log()
            engine.remove(self._container, grace=0)

    def _stop_reaper(self) -> None:
        if self._reaper is not None:
            self._reaper.terminate()
            try:
                self._reaper.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
                self._reaper.wait()
            self._reaper = None

    def _save_log(self) -> None:
        # The reaper follows the log into the file as it grows; once the container has stopped, write the whole
        # log so the file ends with the shutdown lines whatever the reaper managed to copy.
        if self._log_path is None:
            return
        text = self._container_logs()
        if text and self._log_path is not None:
            self._log_path.write_text(text)

    def _container_logs(self) -> str:
        import docker.errors

        try:
            return self._container.logs().decode(errors="replace")
        except docker.errors.APIError:  # NotFound included: the container is gone
            return ""

    def logs(self, tail: int | None = None) -> str:
        text = self._container_logs() if self._container is not None else ""
        if not text and self._log_path is not None and self._log_path.exists():
            text = self._log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def stop(self) -> None:
        super().stop()
        if self._docker is not None:
            self._docker.close()
            self._docker = None

    def urls(self) -> dict[str, Any]:
        return {**super().urls(), "container": self.container_id, "image": self.image}

    def _register(self) -> None:
        assert self._container is not None
        extra = {"container": self._container.id, "docker_host": self.docker_host, "image": self.image}
        self._save_record(self._container.short_id, extra=extra)


def _valid_gpus(gpus: object) -> bool:
    if gpus is None or gpus is False or gpus is True or gpus == "all":
        return True
    if isinstance(gpus, int):
        return gpus > 0
    ids = gpus.split(",") if isinstance(gpus, str) else gpus
    return isinstance(ids, list | tuple) and bool(ids) and all(str(i).strip().isdigit() or str(i).startswith("GPU-")
                                                               for i in ids)  # fmt: skip


def _host_port(container: Any, container_port: int) -> int:
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{container_port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    raise TritonLabError(
        f"Docker published no host port for container port {container_port}",
        fix="see `docker port` for the container; is the engine's userland proxy disabled?",
    )


def _pull_with_progress(client: Any, image: str) -> None:
    from tqdm.auto import tqdm

    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    layers: dict[str, tuple[int, int]] = {}
    with tqdm(desc=f"pulling {image}", unit="B", unit_scale=True, total=0) as bar:
        for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise OSError(event["error"])
            detail = event.get("progressDetail") or {}
            if event.get("id") and detail.get("total"):
                layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
                bar.total = sum(t for _, t in layers.values())
                bar.n = sum(c for c, _ in layers.values())
                bar.refresh()


def _first_line(error: Exception) -> str:
    text = getattr(error, "explanation", None) or str(error)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else type(error).__name__
