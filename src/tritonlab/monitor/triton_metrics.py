"""Triton's metrics endpoint, read with prometheus_client's own text-format parser.

    metrics = read_metrics(server)                       # {family name: prometheus_client Metric}
    total(metrics, "nv_inference_request_success", model="encoder")
    quantile(metrics, "nv_inference_request_summary_us", 0.95, model="encoder")   # with SUMMARY_LATENCIES
    ModelMetrics.read(server, "encoder").avg_batch_size

Latency *summaries* (quantiles over a sliding window) exist only when Triton runs with
``--metrics-config summary_latencies=true``: pass ``extra_args=SUMMARY_LATENCIES`` to ``start_server``.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tritonlab.errors import TritonLabError

SUMMARY_LATENCIES = ("--metrics-config=summary_latencies=true",)


def metrics_text(source: Any) -> str:
    """The text of a metrics endpoint: from a Server (``metrics_text()``), a ServerInfo or a metrics URL."""
    if hasattr(source, "metrics_text"):
        return source.metrics_text()
    url = source if isinstance(source, str) else getattr(source, "metrics_url", None)
    if not url:
        raise TritonLabError(f"cannot tell the metrics URL of {source!r}", fix="pass http://HOST:PORT/metrics")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError as e:
        raise TritonLabError(f"cannot read metrics from {url}: {e}", fix="check that the server runs") from None


def parse_metrics(text: str) -> dict[str, Metric]:
    """{family name: Metric} of a Prometheus text exposition (counters without their ``_total`` suffix)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def read_metrics(source: Any) -> dict[str, Metric]:
    return parse_metrics(metrics_text(source))


def _matches(labels: dict[str, str], wanted: dict[str, Any]) -> bool:
    return all(labels.get(k) == str(v) for k, v in wanted.items())


def total(metrics: dict[str, Metric], name: str, **labels: Any) -> float:
    """Sum of the family's plain samples whose labels match (0.0 if the family is absent, e.g. no GPU)."""
    family = metrics.get(name)
    if family is None:
        return 0.0
    plain = {name, f"{name}_total"}  # a counter's sample is name_total to the parser; gauges keep the name
    return sum(s.value for s in family.samples if s.name in plain and _matches(s.labels, labels))


def quantile(metrics: dict[str, Metric], name: str, q: float, **labels: Any) -> float | None:
    """A summary's quantile ``q`` (e.g. 0.95); None if Triton exports no such summary."""
    family = metrics.get(name)
    if family is None:
        return None
    for s in family.samples:
        is_quantile = s.name == name and "quantile" in s.labels
        if is_quantile and float(s.labels["quantile"]) == q and _matches(s.labels, labels):
            return s.value
    return None


@dataclass(frozen=True)
class ModelMetrics:
    """One model's counters and gauges as Triton exports them (cumulative since the model was loaded)."""

    model: str
    success: float
    failure: float
    inferences: float  # batch elements of successful requests
    executions: float
    request_us: float
    queue_us: float
    compute_infer_us: float
    pending: float
    quantiles_us: dict[float, float]  # request latency summary (with SUMMARY_LATENCIES), else empty

    @classmethod
    def from_metrics(cls, metrics: dict[str, Metric], model: str) -> ModelMetrics:
        family = metrics.get("nv_inference_request_summary_us")
        quantiles = {
            float(s.labels["quantile"]): s.value
            for s in (family.samples if family else [])
            if s.labels.get("model") == model and "quantile" in s.labels
        }
        return cls(
            model=model,
            success=total(metrics, "nv_inference_request_success", model=model),
            failure=total(metrics, "nv_inference_request_failure", model=model),
            inferences=total(metrics, "nv_inference_count", model=model),
            executions=total(metrics, "nv_inference_exec_count", model=model),
            request_us=total(metrics, "nv_inference_request_duration_us", model=model),
            queue_us=total(metrics, "nv_inference_queue_duration_us", model=model),
            compute_infer_us=total(metrics, "nv_inference_compute_infer_duration_us", model=model),
            pending=total(metrics, "nv_inference_pending_request_count", model=model),
            quantiles_us=quantiles,
        )

    @classmethod
    def read(cls, source: Any, model: str) -> ModelMetrics:
        return cls.from_metrics(read_metrics(source), model)

    @property
    def avg_batch_size(self) -> float | None:
        return self.inferences / self.executions if self.executions else None

    @property
    def error_rate(self) -> float | None:
        requests = self.success + self.failure
        return self.failure / requests if requests else None

    @property
    def queue_share(self) -> float | None:
        """Of the time requests spent in the server's queue and in the model, the queue's share."""
        busy = self.queue_us + self.compute_infer_us
        return self.queue_us / busy if busy else None


def resources(metrics: dict[str, Metric]) -> dict[str, float]:
    """Host and GPU gauges: CPU utilisation (0-1) and memory, and per GPU its utilisation and memory (if any)."""
    found = {
        "cpu_utilization": total(metrics, "nv_cpu_utilization"),
        "cpu_memory_used_bytes": total(metrics, "nv_cpu_memory_used_bytes"),
        "cpu_memory_total_bytes": total(metrics, "nv_cpu_memory_total_bytes"),
    }
    for name in ("nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_power_usage"):
        family = metrics.get(name)
        for s in family.samples if family else []:
            found[f"{name.removeprefix('nv_')}[{s.labels.get('gpu_uuid', '?')}]"] = s.value
    return found
