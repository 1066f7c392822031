"""Keeps a server container from outliving its owner, and copies its log to a file.

Started by DockerServer as its own session (``python -m tritonlab.container.reaper ...``) so that it survives a
SIGKILL of the owner: it follows the container's log into the log file, and when the owning process is gone
(a killed kernel, a crashed script) it removes the container. It exits when the container is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path

POLL_S = 0.5


def _follow_logs(container: object, log_path: Path) -> None:
    with contextlib.suppress(Exception), open(log_path, "ab") as log:
        for chunk in container.logs(stream=True, follow=True):  # type: ignore[attr-defined]
            log.write(chunk)
            log.flush()


def run(container_id: str, host: str, log_path: Path | None, owner_pid: int | None, owner_created: float | None) -> int:
    import docker.errors

    from tritonlab.container import engine
    from tritonlab.server.process import same_process

    client = engine.connect(host, timeout=30)
    try:
        container = client.containers.get(container_id)
    except docker.errors.NotFound:
        return 0
    if log_path is not None:
        threading.Thread(target=_follow_logs, args=(container, log_path), daemon=True).start()
    while True:
        time.sleep(POLL_S)
        try:
            container.reload()
        except docker.errors.NotFound:
            return 0
        except docker.errors.APIError:
            continue  # the engine is busy or restarting: ask again
        if owner_pid is not None and same_process(owner_pid, owner_created) is None:
            engine.remove(container, grace=1.0)
            return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("container")
    parser.add_argument("--host", required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--owner-pid", type=int)
    parser.add_argument("--owner-created", type=float)
    args = parser.parse_args()
    raise SystemExit(run(args.container, args.host, args.log, args.owner_pid, args.owner_created))


if __name__ == "__main__":
    main()
