"""One interface for every way of running Triton: embedded process, docker container, remote URL.

Backends implement ``_launch``, ``_exit_code``, ``_terminate`` and ``logs``; everything a learner calls
(readiness, clients, repository API, statistics, failure reports quoting Triton's reasons) lives here once.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import functools
import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import quote

from tritonlab.errors import ModelLoadError, PortInUseError, ServerCrashed, ServerStartError, TritonLabError
from tritonlab.server import logparse

if TYPE_CHECKING:  # pragma: no cover
    import tritonclient.grpc
    import tritonclient.http

ModelControlMode = Literal["none", "poll", "explicit"]
MODEL_CONTROL_MODES: tuple[str, ...] = ("none", "poll", "explicit")
HOST = "127.0.0.1"
_START_ATTEMPTS = 3
_KEEP_LOGS = 40


class Server(abc.ABC):
    """A Triton Inference Server this Python can talk to (and, for owned backends, start and stop).

    Use it as a context manager, or call ``start()`` / ``stop()``::

        with start_server(repo) as server:
            server.http_client().infer(...)
    """

    backend: ClassVar[str]

    def __init__(
        self,
        repository: str | Path | None = None,
        *,
        model_control_mode: ModelControlMode = "none",
        models: tuple[str, ...] | list[str] = (),
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        startup_timeout: float = 120.0,
        exit_timeout: int = 3,
        poll_interval: int = 2,
        log_verbose: int = 0,
        extra_args: tuple[str, ...] | list[str] = (),
        detach: bool = False,
        auto_complete: bool | None = None,
    ):
        if model_control_mode not in MODEL_CONTROL_MODES:
            raise TritonLabError(
                f"model_control_mode={model_control_mode!r} is not a Triton model control mode",
                fix=f"use one of {', '.join(MODEL_CONTROL_MODES)}",
            )
        if models and model_control_mode != "explicit":
            raise TritonLabError(
                "models=... (Triton's --load-model) only applies with model_control_mode='explicit'",
                fix="pass model_control_mode='explicit', or leave models out to serve the whole repository",
            )
        for arg in extra_args:
            if arg.split("=")[0] in ("--http-address", "--grpc-address", "--metrics-address"):
                raise TritonLabError(
                    f"extra_args may not change where Triton listens ({arg}): tritonlab binds 127.0.0.1",
                    fix="leave the address out; use http_port/grpc_port/metrics_port to pick ports",
                )
        if repository is None:
            from tritonlab.examples import example_repository

            repository = example_repository()
        try:
            self.repository = Path(repository).expanduser().resolve()
        except (RuntimeError, OSError) as e:  # Python 3.11 raises RuntimeError for a symbolic link loop
            raise TritonLabError(f"model repository {repository} cannot be resolved ({e})",
                                 fix="pass the real folder, not a link that loops") from None  # fmt: skip
        self.model_control_mode: ModelControlMode = model_control_mode
        self.models = tuple(models)
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self.poll_interval = poll_interval
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self.detach = detach
        self.auto_complete = auto_complete
        self.host = HOST
        self._started = False
        self._clients: list[Any] = []
        self._shared_clients: dict[type, Any] = {}
        self._lock = threading.Lock()
        self._record: Any = None  # the registry entry of an owned server, while it runs
        self.orphans_stopped: list[Any] = []  # registry entries of dead owners' servers that start() stopped

    # ------------------------------------------------------------------ what backends provide
    @abc.abstractmethod
    def _launch(self) -> None:
        """Start the server (ports chosen, process or container running); do not wait for readiness."""

    @abc.abstractmethod
    def _exit_code(self) -> int | None:
        """The exit code if the server has exited, else None."""

    @abc.abstractmethod
    def _terminate(self) -> None:
        """Stop the server: graceful first, forced after a short timeout, in all cases."""

    @abc.abstractmethod
    def logs(self, tail: int | None = None) -> str:
        """The server's log text (the last ``tail`` lines if given)."""

    def _port_was_picked(self, port: int) -> bool:
        """True if tritonlab chose ``port`` (so a conflict on it is worth a retry on new ports)."""
        return False

    def _register(self) -> None:
        """Record the running server where `tritonlab status/down` can find it (owned backends: ``_save_record``)."""

    def _save_record(
        self, record_id: str, *, pid: int | None = None, process_created: float | None = None, extra: dict | None = None
    ) -> None:
        from tritonlab.server import registry
        from tritonlab.server.process import create_time

        owner = None if self.detach else os.getpid()
        self._record = registry.ServerRecord(
            id=record_id,
            backend=self.backend,
            pid=pid,
            create_time=process_created,
            owner_pid=owner,
            owner_create_time=create_time(owner),
            http_url=self.http_url,
            grpc_url=self.grpc_url,
            metrics_url=self.metrics_url,
            repository=str(self.repository),
            log_path=self.log_path,
            model_control_mode=self.model_control_mode,
            extra=extra or {},
        )
        self._record.save()

    def _unregister(self) -> None:
        if self._record is not None:
            self._record.remove()
            self._record = None

    @property
    def log_path(self) -> str | None:
        return None

    @staticmethod
    def _prune_logs() -> None:
        """Keep the newest _KEEP_LOGS server logs (both owned backends write them; none is ever needed forever)."""
        from tritonlab.paths import logs_dir

        def modified(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except OSError:  # pruned by another Python at the same moment
                return 0.0

        logs = sorted(logs_dir().glob("tritonserver-*.log"), key=modified)
        for old in logs[:-_KEEP_LOGS]:
            old.unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        return None

    def serving_args(self) -> list[str]:
        """The tritonserver options every owned backend passes the same way: control mode, exit timeout, log level,
        models to load, and the caller's extra arguments (last, so they can refine the others)."""
        args = [
            f"--model-control-mode={self.model_control_mode}",
            f"--exit-timeout-secs={self.exit_timeout}",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.model_control_mode == "poll":
            args.append(f"--repository-poll-secs={self.poll_interval}")
        if not self._auto_complete():
            args.append("--disable-auto-complete-config")
        args += [f"--load-model={name}" for name in self.models]
        return args + list(self.extra_args)

    def _auto_complete(self) -> bool:
        """Triton's config auto-complete: as asked, else off only where it would add nothing (about 1.3 s saved per
        python model load, see tritonlab.model_config.auto_complete). Kept on in explicit and poll modes: a model added
        to the repository later may need it."""
        if self.auto_complete is not None:
            return self.auto_complete
        from tritonlab.model_config import auto_complete

        return self.model_control_mode != "none" or not auto_complete.adds_nothing(self.repository)

    # ------------------------------------------------------------------ addresses
    @property
    def http_address(self) -> str:
        """host:port, the form tritonclient.http and perf_analyzer take."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.grpc_address}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def urls(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "http_url": self.http_url,
            "grpc_url": self.grpc_url,
            "metrics_url": self.metrics_url,
            "pid": self.pid,
            "repository": str(self.repository),
            "model_control_mode": self.model_control_mode,
            "log_path": self.log_path,
        }

    # ------------------------------------------------------------------ lifetime
    def start(self) -> Self:
        with self._lock:
            if self._started:
                return self
            if self.repository.is_dir() and not os.access(self.repository, os.R_OK | os.X_OK):
                raise TritonLabError(f"model repository {self.repository} cannot be read (permission denied)",
                                     fix=f"give read access: chmod -R a+rX {self.repository}")  # fmt: skip
            if not self.repository.is_dir():
                raise TritonLabError(
                    f"model repository {self.repository} does not exist or is not a directory",
                    fix="pass the folder that holds one sub-folder per model (each with config.pbtxt)",
                )
            if self.backend != "remote":
                self.orphans_stopped = _stop_orphans()
            for attempt in range(_START_ATTEMPTS):
                try:
                    self._launch()  # inside the try: a launch that fails half-way is undone too
                    self._wait_ready()
                    break
                except PortInUseError as e:
                    self._terminate()
                    # A port we picked was free when checked and taken before Triton bound it: pick again.
                    if attempt + 1 < _START_ATTEMPTS and self._port_was_picked(e.port):
                        continue
                    raise
                except BaseException:
                    self._terminate()
                    raise
            try:
                self._register()
            except BaseException:  # e.g. a full disk: a server nobody can find later must not keep running
                self._terminate()
                raise
            self._started = True
            if not self.detach:
                _owned.add(self)
            _started_order.append(self)
            return self

    def stop(self) -> None:
        with self._lock:
            self._close_clients()
            if self._exit_code() is None or self._started:
                self._terminate()
            self._started = False
            self._unregister()
            _owned.discard(self)
            if self in _started_order:
                _started_order.remove(self)

    def kill(self) -> None:
        """Crash the server now (SIGKILL, no graceful unload), as a fault would: for drills and recovery exercises.
        ``stop()`` still cleans up afterwards; ``restart()`` brings it back."""
        self._kill()

    def _kill(self) -> None:
        raise TritonLabError(f"a {self.backend} server cannot be killed from here", fix="stop it where it runs")

    def restart(self) -> Self:
        """Stop (whatever state the server is in: crashed, hung or running) and start again with the same options."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._started and self._exit_code() is None

    def __repr__(self) -> str:
        code = self._exit_code() if self._started else None
        state = "running" if code is None and self._started else (_how_it_ended(code) if self._started else "stopped")
        return f"<{type(self).__name__} {state} http={self.http_url} grpc={self.grpc_url} repo={self.repository}>"

    def crash(self) -> ServerCrashed | None:
        """If this server was started and has died since (killed, crashed, removed behind our back): the error that
        says so, else None. Calls that need the server raise it instead of a bare 'connection refused'."""
        if not self._started:
            return None
        code = self._exit_code()
        if code is None:
            return None
        where = f"pid {self.pid}" if self.pid else self.backend
        errors = logparse.significant_errors(self.logs(tail=40))
        return ServerCrashed(
            f"the Triton server this Python started ({where}, {self.http_url}) is no longer running: "
            f"{_how_it_ended(code)}"
            + (f"; its log ends with: {errors[-1]}" if errors else "")
            + ". Its loaded models and statistics are gone.",
            exit_code=code,
            log_path=self.log_path,
        )

    def _raise_if_crashed(self) -> None:
        crash = self.crash()
        if crash is not None:
            raise crash

    # ------------------------------------------------------------------ readiness and failures
    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._exit_code()
            if code is not None:
                raise self._failure(f"tritonserver exited with code {code} before it was ready")
            if self.is_ready():
                self._wait_listening(grace_s=5.0)
                return
            if time.monotonic() > deadline:
                raise self._failure(f"tritonserver was not ready after {self.startup_timeout:.0f} s")
            time.sleep(0.05)

    def _wait_listening(self, grace_s: float) -> None:
        """Ready is answered by the HTTP service; Triton opens its metrics port last, and on a busy machine a moment
        later (seen on 2 cores): wait briefly until every published port accepts connections, so a scrape right after
        start finds it. Best effort: a port kept closed on purpose (--allow-metrics=false) costs ``grace_s`` once."""
        deadline = time.monotonic() + grace_s
        for port in (self.grpc_port, self.metrics_port):
            while port is not None and time.monotonic() < deadline:
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        break
                except OSError:
                    time.sleep(0.02)

    def _failure(self, what: str) -> TritonLabError:
        """The most specific error the log supports: models with Triton's reasons, a port, or the log tail."""
        log = self.logs()
        reasons = logparse.model_failures(log)
        if not reasons and self.is_live():
            reasons = self._index_failures()
        if reasons:
            return ModelLoadError(reasons, log_path=self.log_path, log_excerpt=logparse.tail(log, 15))
        port = logparse.port_conflict(log)
        if port is not None:
            return PortInUseError(port)
        errors = logparse.significant_errors(log)
        return ServerStartError(
            what + (f": {errors[-1]}" if errors else ""),
            log_excerpt=logparse.tail(log, 25),
            log_path=self.log_path,
            fix="read the log above; `tritonlab doctor` checks the environment",
        )

    def _index_failures(self) -> dict[str, str]:
        with contextlib.suppress(Exception):
            return {
                m["name"]: m.get("reason") or m.get("state", "")
                for m in self.repository_index()
                if m.get("state") == "UNAVAILABLE"
            }
        return {}

    # ------------------------------------------------------------------ plain HTTP (no client import needed)
    def _http(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 2.0, report_crash: bool = True
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.http_port, timeout=timeout)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError:
            if report_crash:
                self._raise_if_crashed()  # a dead server: say so, not 'Connection refused'
            raise
        finally:
            conn.close()

    def _ok(self, path: str) -> bool:
        try:
            return self._http("GET", path, timeout=1.0, report_crash=False)[0] == 200
        except OSError:
            return False

    def is_live(self) -> bool:
        """GET /v2/health/live == 200. Never raises."""
        return self.http_port is not None and self._ok("/v2/health/live")

    def is_ready(self) -> bool:
        """GET /v2/health/ready == 200 (every model loaded, with Triton's default strict readiness)."""
        return self.http_port is not None and self._ok("/v2/health/ready")

    def model_ready(self, name: str, version: str = "") -> bool:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/ready"
        return self.http_port is not None and self._ok(path)

    def metadata(self) -> dict[str, Any]:
        _, body = self._http("GET", "/v2")
        return json.loads(body)

    def metrics_text(self) -> str:
        import urllib.request

        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            self._raise_if_crashed()
            raise

    # ------------------------------------------------------------------ clients
    def http_client(self, **kwargs: Any) -> tritonclient.http.InferenceServerClient:
        """A tritonclient HTTP client for this server (the shared one, or a new one if kwargs are given)."""
        import tritonclient.http

        return self._client(tritonclient.http.InferenceServerClient, self.http_address, kwargs)

    def grpc_client(self, **kwargs: Any) -> tritonclient.grpc.InferenceServerClient:
        """A tritonclient gRPC client for this server (the shared one, or a new one if kwargs are given)."""
        import tritonclient.grpc

        return self._client(tritonclient.grpc.InferenceServerClient, self.grpc_address, kwargs)

    def _client(self, cls: type, address: str, kwargs: dict[str, Any]) -> Any:
        self._raise_if_crashed()  # server.http_client().infer(...) on a dead server: say so, and how to recover
        if kwargs:
            client = _reporting_crashes(cls)(address, **kwargs)
        elif cls in self._shared_clients:
            return self._shared_clients[cls]
        else:
            client = self._shared_clients[cls] = _reporting_crashes(cls)(address)
        client._tritonlab_server = self
        self._clients.append(client)  # closed by stop()
        return client

    def _close_clients(self) -> None:
        # Open client connections keep Triton waiting up to --exit-timeout-secs: close them first.
        for client in self._clients:
            client._tritonlab_closed = True  # a call on it later says so (a client held across a restart)
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        self._shared_clients.clear()

    # ------------------------------------------------------------------ repository API and statistics
    # Plain HTTP + JSON (the v2 protocol) rather than tritonclient.http: these calls then need no gevent, which
    # some machines lack (the H200 one, for instance), and they are exactly what the REST API documents.
    def _call(self, method: str, path: str, payload: Any = None, timeout: float = 60.0) -> Any:
        """Send JSON, return parsed JSON; a non-200 answer raises InferenceServerException with Triton's message."""
        from tritonclient.utils import InferenceServerException

        body = json.dumps(payload).encode() if payload is not None else None
        status, raw = self._http(method, path, body=body, timeout=timeout)
        if status != 200:
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):  # not Triton's {"error": ...}: quote the body as it came
                message = raw.decode(errors="replace") or f"HTTP {status}"
            raise InferenceServerException(msg=message, status=str(status))
        return json.loads(raw) if raw else {}

    def repository_index(self) -> list[dict[str, Any]]:
        """Every model in the repository with its state (and Triton's reason when UNAVAILABLE)."""
        return self._call("POST", "/v2/repository/index", {})

    def load_model(self, name: str, config: dict[str, Any] | None = None) -> None:
        """Load (or reload) a model; needs model_control_mode='explicit'. Raises ModelLoadError with Triton's reason."""
        from tritonclient.utils import InferenceServerException

        self._require_explicit("load")
        log_offset = len(self.logs())  # reasons come only from what Triton logs for this load
        payload = {"parameters": {"config": json.dumps(config)}} if config else {}
        try:
            self._call("POST", f"/v2/repository/models/{quote(name, safe='')}/load", payload, timeout=600.0)
        except InferenceServerException as e:
            reason = logparse.model_failures(self.logs()[log_offset:]).get(name) or e.message() or str(e)
            if self.backend != "remote" and not (self.repository / name).is_dir():
                reason += f" (there is no folder {self.repository / name})"
            raise ModelLoadError({name: reason}, log_path=self.log_path) from None

    def unload_model(self, name: str, unload_dependents: bool = False, wait: float = 30.0) -> None:
        """Unload a model and wait until Triton reports it unloaded (explicit mode)."""
        self._require_explicit("unload")
        payload = {"parameters": {"unload_dependents": unload_dependents}}
        self._call("POST", f"/v2/repository/models/{quote(name, safe='')}/unload", payload)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            states = {m["name"]: m.get("state") for m in self.repository_index()}
            if states.get(name) not in ("READY", "UNLOADING"):
                return
            time.sleep(0.05)
        raise TritonLabError(f"model {name!r} was still unloading after {wait:.0f} s", fix="see server.logs()")

    def _require_explicit(self, action: str) -> None:
        if self.model_control_mode != "explicit":
            raise TritonLabError(
                f"cannot {action} models through the API: this server runs with "
                f"--model-control-mode={self.model_control_mode}",
                fix="start it with model_control_mode='explicit' (CLI: --model-control-mode explicit)",
            )

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """The configuration as Triton loaded it (after auto-complete), not the file on disk."""
        return self._call("GET", _model_path(name, version) + "/config")

    def model_stats(self, name: str = "", version: str = "") -> dict[str, Any]:
        """/v2/models/<name>/stats: inference_count, execution_count, batch_stats ... (all models if no name)."""
        return self._call("GET", (_model_path(name, version) if name else "/v2/models") + "/stats")


_CRASH_REPORTING: dict[type, type] = {}


def _reporting_crashes(cls: type) -> type:
    """``cls`` (a tritonclient client class) whose public calls, when they fail because the server this Python started
    has died, raise ServerCrashed with the fix: a learner keeps ``client = server.http_client()`` across cells."""
    if cls not in _CRASH_REPORTING:

        def wrap(method: Any) -> Any:
            @functools.wraps(method)
            def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return method(self, *args, **kwargs)
                except Exception:
                    server = getattr(self, "_tritonlab_server", None)
                    crash = server.crash() if server is not None else None
                    if crash is not None:
                        raise crash from None
                    if getattr(self, "_tritonlab_closed", False):
                        raise TritonLabError(
                            f"this client was closed when its server was stopped or restarted ({server!r})",
                            fix="take a new one: client = server.http_client() (or server.grpc_client())",
                        ) from None
                    raise

            return call

        methods = {
            name: wrap(member)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_") and name != "close"
            and not isinstance(member, staticmethod | classmethod)  # no self to find the server through
        }  # fmt: skip
        _CRASH_REPORTING[cls] = type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__})
    return _CRASH_REPORTING[cls]


def _stop_orphans() -> list[Any]:
    """Stop the servers whose owner died without stopping them (a killed kernel runs no atexit): the next start
    cleans up, so a learner who re-opens the notebook does not pile up servers, ports and memory."""
    from tritonlab.server import registry

    try:
        return registry.stop_orphans()
    except Exception:  # cleaning up must never keep a learner's server from starting
        return []


def _how_it_ended(code: int | None) -> str:
    """Words for a server's exit code: -N is signal N (subprocess), 128+N signal N in a container, -1 removed."""
    import signal

    if code == -1:
        return "its container was removed"
    number = -code if code is not None and code < 0 else (code - 128 if code is not None and code > 128 else None)
    if number is None:
        return f"it exited with code {code}"
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"it was killed by signal {number}"
    outside = " (sent from outside: the out-of-memory killer, kill -9, or `tritonlab down --all`)"
    return f"it was killed by {name}" + (outside if number == signal.SIGKILL else "")


def _model_path(name: str, version: str = "") -> str:
    return f"/v2/models/{quote(name, safe='')}" + (f"/versions/{quote(version, safe='')}" if version else "")


class _OwnedServers:
    """Servers this Python started; stopped when it exits normally (atexit)."""

    def __init__(self) -> None:
        self._servers: set[Server] = set()
        atexit.register(self.stop_all)

    def add(self, server: Server) -> None:
        self._servers.add(server)

    def discard(self, server: Server) -> None:
        self._servers.discard(server)

    def stop_all(self) -> None:
        for server in list(self._servers):
            with contextlib.suppress(Exception):
                server.stop()


_owned = _OwnedServers()
_started_order: list[Server] = []


def current_server() -> Server | None:
    """The most recently started server of this Python that still runs (what ``check()`` inspects)."""
    for server in reversed(_started_order):
        if server.running:
            return server
    return None


def crashed_server() -> Server | None:
    """The most recently started server of this Python if it has died since and none started later runs."""
    for server in reversed(_started_order):
        if server.running:
            return None
        if server.crash() is not None:
            return server
    return None
