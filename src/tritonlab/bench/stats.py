"""Snapshots of a model's server-side counters (``/v2/models/M/stats``), taken around a measurement.

The difference between two snapshots says what the server did during the window: how many requests it
completed, how many model executions that took (the average batch size) and how long requests queued.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlparse

from tritonlab.errors import TritonLabError

StatsReader = Callable[[], dict[str, Any]]


def host_port(url: str) -> tuple[str, int]:
    """(host, port) from "http://h:p", "grpc://h:p" or "h:p"."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if not parsed.hostname or not parsed.port:
        raise TritonLabError(f"cannot read a host and port from {url!r}", fix="use http://HOST:PORT")
    return parsed.hostname, parsed.port


def snapshot(stats: dict[str, Any]) -> dict[str, Any]:
    """The counters a benchmark needs from one /stats answer, summed over the model's versions."""
    totals: dict[str, Any] = {"success_count": 0, "inference_count": 0, "execution_count": 0, "queue_ns": 0,
                              "compute_infer_ns": 0, "last_inference": 0, "batch_stats": {}}  # fmt: skip
    for version in stats.get("model_stats", []):
        inference = version.get("inference_stats", {})
        totals["success_count"] += int(inference.get("success", {}).get("count", 0))
        totals["queue_ns"] += int(inference.get("queue", {}).get("ns", 0))
        totals["compute_infer_ns"] += int(inference.get("compute_infer", {}).get("ns", 0))
        totals["inference_count"] += int(version.get("inference_count", 0))
        totals["execution_count"] += int(version.get("execution_count", 0))
        totals["last_inference"] = max(totals["last_inference"], int(version.get("last_inference", 0)))
        for batch in version.get("batch_stats", []):
            size = int(batch["batch_size"])
            count = int(batch.get("compute_infer", {}).get("count", 0))
            totals["batch_stats"][size] = totals["batch_stats"].get(size, 0) + count
    return totals


def get_json(http_url: str, path: str, *, what: str, fix: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``path`` from Triton's HTTP endpoint; a TritonLabError quoting Triton's message if it says no."""
    host, port = host_port(http_url)
    # A new connection per call: no client state shared between the caller's threads.
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except OSError as e:
        raise TritonLabError(
            f"cannot read {what} from {http_url}: {e}", fix="check that the server runs (`tritonlab status`)"
        ) from None
    finally:
        conn.close()
    if response.status != 200:
        raise TritonLabError(f"Triton refused {what}: {error_text(body)}", fix=fix)
    return json.loads(body)


def model_stats_reader(http_url: str, model: str, timeout: float = 5.0) -> StatsReader:
    """A function returning a fresh snapshot of ``model``'s counters; safe to call from any thread."""
    path = f"/v2/models/{quote(model, safe='')}/stats"
    fix = "check the model name (`tritonlab status`, server.repository_index())"

    def read() -> dict[str, Any]:
        return snapshot(get_json(http_url, path, what=f"statistics of model {model!r}", fix=fix, timeout=timeout))

    return read


def error_text(body: bytes) -> str:
    """Triton's own error message from an error answer ({"error": "..."}), else the body as text."""
    try:
        return str(json.loads(body).get("error") or body.decode(errors="replace"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")
