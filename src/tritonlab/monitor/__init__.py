"""Monitoring Triton with a real Prometheus: start one, query it, check rule files, read Triton's metrics.

    from tritonlab.monitor import Prometheus, SUMMARY_LATENCIES
    server = start_server(repo, extra_args=SUMMARY_LATENCIES)     # latency quantiles on the metrics port
    with Prometheus(server, rule_files=["alerts.yml"]) as prom:   # 127.0.0.1, scrapes every second
        prom.wait_first_scrape()
        prom.query_value('sum(rate(nv_inference_count{model="encoder"}[5s]))')
        prom.alert_states()

Prometheus comes from Debian's ``prometheus`` package (``apt-get install prometheus``); without it,
``Prometheus(...).start()`` and ``check_rules`` raise an error saying so, and the rest of tritonlab works.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Lazy: `tritonlab.monitor.cli` is imported by every `tritonlab` command, which must not pay for the server
# package and prometheus_client unless it uses them.
_WHERE = {
    "PrometheusAPI": "api", "PromQLError": "api", "Sample": "api", "Series": "api",
    "INSTALL_FIX": "binary", "find_binary": "binary", "prometheus_available": "binary",
    "JOB": "prometheus", "SCRAPE_INTERVAL_S": "prometheus", "Prometheus": "prometheus", "metrics_url_of": "prometheus",
    "prometheus_config": "prometheus",
    "RulesError": "rules", "RulesReport": "rules", "check_rules": "rules",
    "SUMMARY_LATENCIES": "triton_metrics", "ModelMetrics": "triton_metrics", "parse_metrics": "triton_metrics",
    "quantile": "triton_metrics", "read_metrics": "triton_metrics", "resources": "triton_metrics",
    "total": "triton_metrics",
}  # fmt: skip

if TYPE_CHECKING:  # pragma: no cover
    from tritonlab.monitor.api import PrometheusAPI, PromQLError, Sample, Series
    from tritonlab.monitor.binary import INSTALL_FIX, find_binary, prometheus_available
    from tritonlab.monitor.prometheus import JOB, SCRAPE_INTERVAL_S, Prometheus, metrics_url_of, prometheus_config
    from tritonlab.monitor.rules import RulesError, RulesReport, check_rules
    from tritonlab.monitor.triton_metrics import (
        SUMMARY_LATENCIES,
        ModelMetrics,
        parse_metrics,
        quantile,
        read_metrics,
        resources,
        total,
    )

__all__ = [
    "INSTALL_FIX", "JOB", "SCRAPE_INTERVAL_S", "SUMMARY_LATENCIES", "ModelMetrics", "PromQLError", "Prometheus",
    "PrometheusAPI", "RulesError", "RulesReport", "Sample", "Series", "check_rules", "find_binary",
    "metrics_url_of", "parse_metrics", "prometheus_available", "prometheus_config", "quantile", "read_metrics",
    "resources", "total",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"tritonlab.monitor.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tritonlab.monitor' has no attribute {name!r}")
