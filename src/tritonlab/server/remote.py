"""The remote backend: a Triton server somebody else runs, reached by URL. tritonlab never stops it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from tritonlab.errors import TritonLabError
from tritonlab.server.base import Server


class RemoteServer(Server):
    backend = "remote"

    def __init__(self, url: str, *, grpc_url: str | None = None, metrics_url: str | None = None, **options: Any):
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname or not parsed.port:
            raise TritonLabError(f"cannot read a host and port from server URL {url!r}", fix="use http://HOST:PORT")
        super().__init__(options.pop("repository", None), **options)
        self.host = parsed.hostname
        self.http_port = parsed.port
        self.grpc_port = urlparse(grpc_url).port if grpc_url else parsed.port + 1
        self.metrics_port = urlparse(metrics_url).port if metrics_url else parsed.port + 2

    def _launch(self) -> None:
        pass

    def _exit_code(self) -> int | None:
        return None

    def _terminate(self) -> None:
        pass  # not ours to stop

    def _wait_ready(self) -> None:
        import time

        deadline = time.monotonic() + self.startup_timeout
        while not self.is_ready():
            if time.monotonic() > deadline:
                state = "live but not ready" if self.is_live() else "not answering"
                raise TritonLabError(
                    f"the Triton server at {self.http_url} is {state} after {self.startup_timeout:.0f} s",
                    fix="check the URL, that the server runs, and its log for models that failed to load",
                )
            time.sleep(0.1)

    def logs(self, tail: int | None = None) -> str:
        return ""  # a remote server's log lives where it runs
