"""Connecting to the Docker engine and finding tritonlab's own containers by their labels."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonlab.errors import TritonLabError
from tritonlab.paths import cache_dir

if TYPE_CHECKING:  # pragma: no cover
    import docker
    import docker.models.containers

LABEL = "org.tritonlab.server"  # every container tritonlab starts carries it
LABEL_CACHE = "org.tritonlab.cache"  # the tritonlab cache dir of the starter: `down --all` only takes its own
LABEL_HOST = "org.tritonlab.host"
LABEL_OWNER_PID = "org.tritonlab.owner-pid"
LABEL_OWNER_CREATED = "org.tritonlab.owner-created"
DEFAULT_SOCKET = "/var/run/docker.sock"


class DockerUnavailable(TritonLabError):
    """The Docker engine cannot be used from here (not installed, not running, no permission)."""


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def engine_configured() -> bool:
    """Cheap test (no import, no connection) whether a Docker engine could be here at all."""
    host = docker_host()
    return not host.startswith("unix://") or Path(host.removeprefix("unix://")).exists()


def connect(host: str | None = None, timeout: float = 30.0) -> docker.DockerClient:
    """A docker-py client to ``host`` (default $DOCKER_HOST or the default socket), or DockerUnavailable naming
    the fix."""
    try:
        import docker
        import docker.errors
    except ImportError:
        raise DockerUnavailable(
            "the Docker SDK for Python (docker-py) is not installed in this environment",
            fix="run env/setup.sh (it installs docker==7.2.0), or pip install docker==7.2.0",
        ) from None
    host = host or docker_host()
    try:
        return docker.DockerClient(base_url=host, timeout=int(timeout), version="auto")
    except docker.errors.DockerException as e:
        raise _unavailable(host, e) from None


def _unavailable(host: str, error: Exception) -> DockerUnavailable:
    text = str(error)
    if "Permission denied" in text or "PermissionError" in text:
        return DockerUnavailable(
            f"permission denied on the Docker engine socket {host}",
            fix="add yourself to the docker group (sudo usermod -aG docker $USER, then log out and back in), "
            "or use backend='embedded', which needs no Docker",
        )
    return DockerUnavailable(
        f"the Docker engine is not reachable at {host} ({_short(text)})",
        fix="start it (sudo systemctl start docker), or point DOCKER_HOST at a running one; "
        "or use backend='embedded', which needs no Docker",
    )


def _short(text: str) -> str:
    for marker in ("No such file or directory", "Connection refused", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:160] if text else "no answer"


NVIDIA_TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit (sudo nvidia-ctk runtime configure --runtime=docker, then restart docker)"
)


def lacks_gpu_runtime(error: Exception) -> bool:
    """The engine refused a GPU device request because it has no NVIDIA runtime."""
    text = str(error)
    return "could not select device driver" in text or ("nvidia" in text.lower() and "runtime" in text.lower())


def owner_labels(owner_pid: int | None, owner_created: float | None) -> dict[str, str]:
    labels = {LABEL: "1", LABEL_CACHE: str(cache_dir()), LABEL_HOST: socket.gethostname()}
    if owner_pid is not None:
        labels[LABEL_OWNER_PID] = str(owner_pid)
        labels[LABEL_OWNER_CREATED] = repr(owner_created)
    return labels


def own_containers(client: docker.DockerClient, *, any_cache: bool = False) -> list[Any]:
    """tritonlab's containers on this engine (running or not) started with this cache dir (or any)."""
    filters = {"label": [LABEL] if any_cache else [LABEL, f"{LABEL_CACHE}={cache_dir()}"]}
    # ignore_removed: a reaper may remove a container between docker-py's list and its per-container inspect
    return client.containers.list(all=True, filters=filters, ignore_removed=True)


def stop(container: Any, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` s; a container already stopped or gone is fine."""
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.stop(timeout=max(0, round(grace)))


def remove(container: Any, grace: float = 2.0) -> None:
    """Stop (SIGTERM, then SIGKILL after ``grace`` s) and remove; a container already gone is fine.
    ``grace=0`` removes at once (SIGKILL): for a container already stopped, or one that may die hard."""
    import docker.errors

    if grace > 0:
        stop(container, grace)
    with contextlib.suppress(docker.errors.NotFound):
        try:
            container.remove(force=True, v=True)
        except docker.errors.APIError as e:
            if "already in progress" not in str(e):  # someone else (the reaper) is removing it
                raise


def remove_by_id(container_id: str, host: str | None = None, grace: float = 2.0) -> bool | None:
    """Remove a container by id if it exists: True if it was there, False if not, None when the engine cannot be
    reached (then nobody can tell, as with ``container_exists``)."""
    import docker.errors

    try:
        client = connect(host, timeout=10)
    except DockerUnavailable:
        return None
    try:
        remove(client.containers.get(container_id), grace)
        return True
    except docker.errors.NotFound:
        return False
    finally:
        client.close()


def container_exists(container_id: str, host: str | None = None) -> bool | None:
    """True/False, or None when the engine cannot be asked (then nobody can tell)."""
    import docker.errors

    try:
        client = connect(host, timeout=10)
    except DockerUnavailable:
        return None
    try:
        client.containers.get(container_id)
        return True
    except docker.errors.NotFound:
        return False
    finally:
        client.close()
