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
CONNECT_S = 120.0


def _follow_logs(container: object, log_path: Path) -> None:
    try:
        with open(log_path, "ab") as log:
            for chunk in container.logs(stream=True, follow=True):  # type: ignore[attr-defined]
                log.write(chunk)
                log.flush()
    except Exception as e:  # the container's end closes the stream; anything else is said where the learner looks
        _note(log_path, f"stopped copying the container's log: {type(e).__name__}: {e}")


def _note(log_path: Path | None, text: str) -> None:
    if log_path is not None:
        with contextlib.suppress(OSError), open(log_path, "a") as log:
            log.write(f"[tritonlab reaper] {text}\n")


def _container(container_id: str, host: str, log_path: Path | None) -> object | None:
    """The container, asked for until the engine answers (a busy engine is no reason to leave a container
    unguarded); None once it is gone."""
    import docker.errors

    from tritonlab.container import engine

    deadline = time.monotonic() + CONNECT_S
    while True:
        try:
            return engine.connect(host, timeout=30).containers.get(container_id)
        except docker.errors.NotFound:
            return None
        except Exception as e:
            if time.monotonic() > deadline:
                _note(log_path, f"the Docker engine did not answer for {CONNECT_S:.0f} s ({type(e).__name__}: {e})")
                raise
            time.sleep(POLL_S)


def run(container_id: str, host: str, log_path: Path | None, owner_pid: int | None, owner_created: float | None) -> int:
    import docker.errors

    from tritonlab.container import engine
    from tritonlab.server.process import same_process

    container = _container(container_id, host, log_path)
    if container is None:
        return 0
    if log_path is not None:
        threading.Thread(target=_follow_logs, args=(container, log_path), daemon=True).start()
    while True:
        time.sleep(POLL_S)
        try:
            container.reload()  # type: ignore[attr-defined]
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
