"""Shared helpers for tests/monitor: a real embedded Triton (the shipped add_sub, with latency summaries) and
real Prometheus servers. Imported by the test modules (this folder has no conftest of its own)."""

from __future__ import annotations

import json
import os
import urllib.request

import numpy as np
import pytest

from tritonlab.monitor import SUMMARY_LATENCIES, prometheus_available

# Skips on a learner's machine without the package; under CI (which installs it) a missing Prometheus fails instead.
needs_prometheus = pytest.mark.skipif(
    not prometheus_available() and not os.environ.get("CI"),
    reason="prometheus/promtool not installed (env/system.sh installs them as root)",
)


def start_triton():
    from tritonlab.server import start_server

    return start_server(extra_args=SUMMARY_LATENCIES)


def add_sub(server, count: int) -> None:
    """``count`` real add_sub requests over plain HTTP/JSON."""
    body = json.dumps({"inputs": [
        {"name": n, "shape": [1, 4], "datatype": "FP32", "data": np.arange(4, dtype=np.float32).tolist()}
        for n in ("INPUT0", "INPUT1")
    ]}).encode()  # fmt: skip
    for _ in range(count):
        request = urllib.request.Request(f"{server.http_url}/v2/models/add_sub/infer", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


def prometheus_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "prometheus"}
