"""A registry of the Prometheus servers tritonlab started (one JSON file each, under the user cache dir).

It outlives the Python that started them, so ``tritonlab monitor down`` can stop a detached one, or clean up
after an owner that died (the kernel sends SIGTERM to an owned Prometheus, but its temp dir stays behind).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tritonlab.paths import cache_dir
from tritonlab.server.process import same_process, stop_process_tree


def monitors_dir() -> Path:
    path = cache_dir() / "prometheus"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class MonitorRecord:
    pid: int
    create_time: float | None
    owner_pid: int | None  # None: detached, nobody owns it
    owner_create_time: float | None
    url: str
    targets: list[str]  # the metrics URLs it scrapes
    workdir: str  # config, rules list, storage and log: removed when it stops
    started_at: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        return monitors_dir() / f"{self.pid}.json"

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @property
    def detached(self) -> bool:
        return self.owner_pid is None

    def alive(self) -> bool:
        return same_process(self.pid, self.create_time) is not None

    @property
    def orphaned(self) -> bool:
        return not self.detached and same_process(self.owner_pid or 0, self.owner_create_time) is None


def _forget(record: MonitorRecord) -> None:
    shutil.rmtree(record.workdir, ignore_errors=True)
    record.remove()


def records() -> list[MonitorRecord]:
    """Registered Prometheus servers that still run; the others are dropped (with their temp dirs)."""
    found = []
    for path in sorted(monitors_dir().glob("*.json")):
        try:
            record = MonitorRecord(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, OSError):
            path.unlink(missing_ok=True)
            continue
        if not record.alive():
            _forget(record)
            continue
        found.append(record)
    return found


def for_target(metrics_url: str) -> list[MonitorRecord]:
    """Running Prometheus servers that scrape ``metrics_url``, newest first."""
    return sorted((r for r in records() if metrics_url in r.targets), key=lambda r: r.started_at, reverse=True)


def stop(record: MonitorRecord, grace: float = 5.0) -> bool:
    stopped = stop_process_tree(record.pid, record.create_time, grace)
    _forget(record)
    return stopped


def down(everything: bool = False) -> tuple[list[MonitorRecord], list[MonitorRecord]]:
    """Stop detached and orphaned Prometheus servers (all with ``everything``): (stopped, left running)."""
    stopped, skipped = [], []
    for record in records():
        if everything or record.detached or record.orphaned:
            with contextlib.suppress(Exception):
                stop(record)
            stopped.append(record)
        else:
            skipped.append(record)
    return stopped, skipped
