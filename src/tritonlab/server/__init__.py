"""Run a real Triton Inference Server: embedded (no Docker, no GPU needed), in a Docker container, or an existing
one by URL.

    from tritonlab.server import start_server
    with start_server("my_repo", model_control_mode="explicit") as server:
        server.load_model("add_sub")
        print(server.http_url, server.model_stats("add_sub"))

The backend is chosen by ``backend=`` (or the TRITONLAB_BACKEND environment variable); all share ``Server``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tritonlab.errors import TritonLabError
from tritonlab.server.base import MODEL_CONTROL_MODES, Server
from tritonlab.server.container import DockerServer
from tritonlab.server.embedded import EmbeddedServer
from tritonlab.server.remote import RemoteServer

BACKENDS: dict[str, type[Server]] = {"embedded": EmbeddedServer, "docker": DockerServer, "remote": RemoteServer}

__all__ = [
    "BACKENDS",
    "MODEL_CONTROL_MODES",
    "DockerServer",
    "EmbeddedServer",
    "RemoteServer",
    "Server",
    "create_server",
    "start_server",
]


def create_server(repository: str | Path | None = None, *, backend: str | None = None, **options: Any) -> Server:
    """A server object, not started yet. ``backend`` defaults to $TRITONLAB_BACKEND or 'embedded'."""
    backend = backend or os.environ.get("TRITONLAB_BACKEND") or "embedded"
    if backend not in BACKENDS:
        raise TritonLabError(f"unknown server backend {backend!r}", fix=f"use one of: {', '.join(sorted(BACKENDS))}")
    cls = BACKENDS[backend]
    if cls is RemoteServer:
        url = options.pop("url", None) or os.environ.get("TRITONLAB_SERVER_URL")
        if not url:
            raise TritonLabError("backend='remote' needs url=", fix="pass url='http://HOST:8000'")
        return RemoteServer(url, repository=repository, **options)
    return cls(repository, **options)


def start_server(repository: str | Path | None = None, *, backend: str | None = None, **options: Any) -> Server:
    """Start a Triton server on ``repository`` (default: the shipped example) and wait until it is ready."""
    return create_server(repository, backend=backend, **options).start()
