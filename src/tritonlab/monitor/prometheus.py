"""A real Prometheus server (Debian's ``prometheus`` 2.42) scraping Triton's metrics endpoint every second.

    with Prometheus(server, rule_files=["alerts.yml"]) as prom:   # a Server, or a metrics URL
        prom.wait_first_scrape()
        prom.query_value('sum(rate(nv_inference_count{model="encoder"}[5s]))')

It listens on 127.0.0.1 (a free port unless given), keeps its data in its own temp dir (removed on stop), and
never outlives its owner: the kernel sends it SIGTERM when the Python that started it dies (pdeathsig), ``stop``
runs at exit, and a registry entry lets ``tritonlab monitor down`` find it otherwise.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

from tritonlab.errors import PortInUseError, ServerStartError, TritonLabError
from tritonlab.monitor import registry
from tritonlab.monitor.api import PrometheusAPI
from tritonlab.monitor.binary import find_binary
from tritonlab.monitor.rules import check_rules
from tritonlab.server import ports
from tritonlab.server.process import create_time, die_with_parent_preexec, stop_process_tree

HOST = "127.0.0.1"
JOB = "triton"  # the job label of every Triton target: up{job="triton"}
SCRAPE_INTERVAL_S = 1  # scrape and rule evaluation: every second, so a lab sees changes at once
_START_ATTEMPTS = 3


def metrics_url_of(target: Any) -> str:
    """The metrics URL of a Server / ServerInfo, of a tritonlab server given by its HTTP URL, or a metrics URL."""
    url = getattr(target, "metrics_url", None) if not isinstance(target, str) else target
    if not url:
        raise TritonLabError(
            f"{target!r} has no metrics URL", fix="pass the server's metrics URL (http://HOST:PORT/metrics)"
        )
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.path not in ("", "/"):
        return url
    from tritonlab.server import registry as servers

    for record in servers.records():  # an HTTP URL of a server tritonlab started: it knows the metrics port
        if urlparse(record.http_url).netloc == parsed.netloc:
            return record.metrics_url
    raise TritonLabError(
        f"{url} is not a metrics URL, and no tritonlab server has it as its HTTP URL",
        fix="pass Triton's metrics URL, e.g. http://127.0.0.1:8002/metrics (`tritonlab status` lists them)",
    )


def prometheus_config(targets: Sequence[str], rule_files: Sequence[Path]) -> dict[str, Any]:
    """The configuration: one job ``triton`` scraping every target each second, the rule files, 1 s evaluation."""
    paths = {urlparse(t).path or "/metrics" for t in targets}
    if len(paths) > 1:
        raise TritonLabError(f"targets have different metrics paths {sorted(paths)}", fix="use one Prometheus per path")
    interval = f"{SCRAPE_INTERVAL_S}s"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": paths.pop() if paths else "/metrics",
            "static_configs": [{"targets": [urlparse(t).netloc for t in targets]}],
        }],
    }  # fmt: skip


class Prometheus(PrometheusAPI):
    """A Prometheus process this Python owns (unless ``detach``), with the HTTP API of ``PrometheusAPI``."""

    def __init__(
        self,
        *targets: Any,
        rule_files: Sequence[str | Path] = (),
        port: int | None = None,
        startup_timeout: float = 30.0,
        detach: bool = False,
    ):
        if not targets:
            raise TritonLabError("Prometheus needs something to scrape", fix="pass the server: Prometheus(server)")
        self.metrics_urls = [metrics_url_of(t) for t in targets]
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.detach = detach
        self.port: int | None = None
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._create_time: float | None = None
        self._record: registry.MonitorRecord | None = None
        self._lock = threading.Lock()
        super().__init__(f"http://{HOST}:0")

    # ------------------------------------------------------------------ lifetime
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "prometheus.log" if self.workdir else None

    def logs(self, tail: int | None = None) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:] if tail else lines)

    def start(self) -> Self:
        """Start Prometheus and wait until it serves queries (not for the first scrape: ``wait_first_scrape``)."""
        with self._lock:
            if self.running:
                return self
            binary = find_binary("prometheus")
            for rules in self.rule_files:
                check_rules(rules)  # a bad file fails here with promtool's line, not as a silent Prometheus error
            for attempt in range(_START_ATTEMPTS):
                self._launch(binary)
                try:
                    self._wait_ready()
                    break
                except PortInUseError:
                    self._terminate()
                    if self.requested_port is None and attempt + 1 < _START_ATTEMPTS:
                        continue  # the free port we picked was taken before Prometheus bound it
                    raise
                except BaseException:
                    self._terminate()
                    raise
            self._register()
            if not self.detach:
                atexit.register(self.stop)
            return self

    def stop(self) -> None:
        with self._lock:
            self._terminate()
            atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Prometheus {state} {self.url} scraping {', '.join(self.metrics_urls)}>"

    def _launch(self, binary: str) -> None:
        if self.requested_port is not None:
            ports.ensure_free(self.requested_port)
        self.port = self.requested_port or ports.free_ports(1)[0]
        self.url = f"http://{HOST}:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonlab-prometheus-"))
        self._write_config()
        command = [
            binary,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--web.enable-lifecycle",  # POST /-/reload: new rule files without a restart
            "--storage.tsdb.retention.time=6h",
        ]
        with open(self.workdir / "prometheus.log", "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                start_new_session=True,  # a notebook interrupt must not reach it
                preexec_fn=None if self.detach else die_with_parent_preexec(),
            )  # fmt: skip
        self._create_time = create_time(self._process.pid)

    def _write_config(self) -> None:
        assert self.workdir is not None
        # JSON is YAML: the config needs no YAML library.
        config = prometheus_config(self.metrics_urls, self.rule_files)
        (self.workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))

    def _wait_ready(self) -> None:
        assert self._process is not None and self.port is not None
        deadline = time.monotonic() + self.startup_timeout
        while not self.ready():
            if self._process.poll() is not None:
                log = self.logs(tail=15)
                if "address already in use" in log:
                    raise PortInUseError(self.port, ports.port_holder(self.port))
                raise ServerStartError(f"prometheus exited with code {self._process.returncode} before it was ready",
                                       log_excerpt=log, fix="read the log above")  # fmt: skip
            if time.monotonic() > deadline:
                raise ServerStartError(f"prometheus was not ready after {self.startup_timeout:.0f} s",
                                       log_excerpt=self.logs(tail=15), fix="read the log above")  # fmt: skip
            time.sleep(0.02)

    def _terminate(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                stop_process_tree(self._process.pid, self._create_time, grace=5.0)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._record is not None:
            self._record.remove()
            self._record = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self._process = None

    def _register(self) -> None:
        assert self._process is not None and self.workdir is not None
        owner = None if self.detach else os.getpid()
        self._record = registry.MonitorRecord(
            pid=self._process.pid, create_time=self._create_time, owner_pid=owner,
            owner_create_time=create_time(owner) if owner else None, url=self.url, targets=self.metrics_urls,
            workdir=str(self.workdir),
        )  # fmt: skip
        self._record.save()

    # ------------------------------------------------------------------ rules
    def load_rules(self, *rule_files: str | Path) -> list[dict[str, Any]]:
        """Replace the rule files (each checked with promtool first), reload, and return the loaded groups."""
        paths = [Path(p).resolve() for p in rule_files]
        for path in paths:
            check_rules(path)
        self.rule_files = paths
        if not self.running:
            return []
        self._write_config()
        self._request("/-/reload", method="POST")
        loaded = [g for g in self.rules() if Path(g.get("file", "")).resolve() in paths]
        if paths and not loaded:
            raise TritonLabError(f"Prometheus loaded no rule group from {', '.join(map(str, paths))}",
                                 fix="check the file has a groups: list with at least one rule")  # fmt: skip
        return loaded
