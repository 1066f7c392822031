"""A registry of running servers (one JSON file each under the user cache dir).

It outlives the Python that started a server, so `tritonlab status` can list servers and `tritonlab down`
can stop those whose owner died (a killed Jupyter kernel) or that were started with `tritonlab up --detach`.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from tritonlab.paths import servers_dir
from tritonlab.server.process import same_process, stop_process_tree, sweep_orphaned_shm
from tritonlab.server.staging import staged_root_dir


@dataclass
class ServerRecord:
    id: str
    backend: str
    pid: int | None  # the tritonserver process (None for servers we do not own a process of)
    create_time: float | None
    owner_pid: int | None  # None: detached, nobody owns it
    owner_create_time: float | None
    http_url: str
    grpc_url: str
    metrics_url: str
    repository: str
    log_path: str | None
    model_control_mode: str
    started_at: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return servers_dir() / f"{self.id}.json"

    def save(self) -> None:
        from tritonlab.diskspace import atomic_write_text

        text = json.dumps(asdict(self), indent=2)
        atomic_write_text(self.path, text, "the server registry entry", tmp=self.path.with_suffix(".tmp"))

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def detached(self) -> bool:
        return self.owner_pid is None

    def process_alive(self) -> bool:
        return self.pid is not None and same_process(self.pid, self.create_time) is not None

    def owner_alive(self) -> bool:
        return self.owner_pid is not None and same_process(self.owner_pid, self.owner_create_time) is not None

    @property
    def orphaned(self) -> bool:
        """Started by a Python that is gone (and not detached on purpose)."""
        return not self.detached and not self.owner_alive()


def records() -> list[ServerRecord]:
    """Every registered server; entries whose process is gone are dropped from the registry."""
    found = []
    for path in sorted(servers_dir().glob("*.json")):
        try:
            record = ServerRecord(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, OSError):
            path.unlink(missing_ok=True)  # a half-written or foreign file: not ours to keep
            continue
        if record.pid is not None and not record.process_alive():
            record.remove()
            continue
        if record.backend == "docker" and _container_exists(record) is False:
            record.remove()
            continue
        found.append(record)
    return found


def _container_exists(record: ServerRecord) -> bool | None:
    from tritonlab.container import engine

    return engine.container_exists(record.extra["container"], record.extra.get("docker_host"))


def get(server_id: str) -> ServerRecord | None:
    return next((r for r in records() if r.id == server_id), None)


def stray_tritonservers() -> list[psutil.Process]:
    """tritonserver processes running a binary tritonlab staged that no registry entry accounts for."""
    known = {r.pid for r in records()}
    staged = str(staged_root_dir())
    strays = []
    for proc in psutil.process_iter(["pid", "name", "exe"]):
        with contextlib.suppress(psutil.Error):
            exe = proc.info.get("exe") or ""
            if proc.info["name"] == "tritonserver" and exe.startswith(staged) and proc.pid not in known:
                strays.append(proc)
    return strays


def stop(record: ServerRecord, grace: float = 10.0) -> bool | None:
    """Stop the server and drop its record: True if it was running. None for a container whose engine cannot be
    reached: its record is kept, so a later stop can remove it once the engine is back."""
    stopped: bool | None = False
    if record.pid is not None:
        stopped = stop_process_tree(record.pid, record.create_time, grace)
    elif record.backend == "docker":
        from tritonlab.container import engine

        stopped = engine.remove_by_id(record.extra["container"], record.extra.get("docker_host"), grace=2.0)
    if stopped is not None:
        record.remove()
    return stopped


def stray_containers() -> list[object]:
    """Containers labelled as tritonlab's (started with this cache dir) that no registry entry accounts for."""
    from tritonlab.container import engine

    if not engine.engine_configured():
        return []
    try:
        client = engine.connect(timeout=10)
    except engine.DockerUnavailable:
        return []
    known = {r.extra.get("container") for r in records() if r.backend == "docker"}
    return [c for c in engine.own_containers(client) if c.id not in known]


def _label_owner_alive(labels: dict[str, str]) -> bool:
    import socket

    from tritonlab.container import engine

    pid = labels.get(engine.LABEL_OWNER_PID)
    if pid is None or labels.get(engine.LABEL_HOST) != socket.gethostname():
        return True  # detached on purpose, or another machine's process: only --all stops it
    created = labels.get(engine.LABEL_OWNER_CREATED)
    return same_process(int(pid), float(created) if created not in (None, "None") else None) is not None


def stop_orphans(grace: float = 10.0) -> list[ServerRecord]:
    """Stop servers whose owning process died (never detached ones, never those of a live owner)."""
    orphans = [r for r in records() if r.orphaned]
    for record in orphans:
        stop(record, grace)
    return orphans


def down(
    everything: bool = False, grace: float = 10.0
) -> tuple[list[ServerRecord], list[ServerRecord], int, list[ServerRecord]]:
    """Stop orphaned and detached servers (or all with ``everything``), unregistered containers whose owner died,
    and with ``everything`` every stray.

    Returns (stopped, skipped because a live owner holds them, strays killed, containers whose engine cannot be
    reached: their records are kept, so a later ``down`` can remove them once the engine is back).
    """
    stopped, skipped, unreachable = [], [], []
    for record in records():
        if not (everything or record.detached or record.orphaned):
            skipped.append(record)
        elif stop(record, grace) is None:
            unreachable.append(record)
        else:
            stopped.append(record)
    strays = 0
    if everything:
        for proc in stray_tritonservers():
            if stop_process_tree(proc.pid, proc.create_time(), grace):
                strays += 1
    from tritonlab.container import engine

    for container in stray_containers():
        # Without --all only those whose labelled owner is dead (it died before its reaper could take over).
        if everything or not _label_owner_alive(container.labels):
            engine.remove(container, grace=2.0)
            strays += 1
    sweep_orphaned_shm()  # regions of servers that died hard before anyone called down
    return stopped, skipped, strays, unreachable
