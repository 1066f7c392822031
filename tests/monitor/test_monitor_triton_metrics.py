"""tritonlab.monitor.triton_metrics against a real Triton: parsed counters equal /stats, summaries only when
enabled, host gauges present."""

from __future__ import annotations

import pytest
from monitor_fixtures import add_sub, start_triton

from tritonlab.monitor import ModelMetrics, parse_metrics, quantile, read_metrics, resources, total


@pytest.fixture(scope="module")
def triton():
    with start_triton() as server:
        add_sub(server, 20)
        yield server


def test_counters_match_the_servers_own_statistics(triton):
    stats = triton.model_stats("add_sub")["model_stats"][0]
    metrics = ModelMetrics.read(triton, "add_sub")
    assert metrics.success == stats["inference_stats"]["success"]["count"] >= 20
    assert metrics.inferences == stats["inference_count"]
    assert metrics.executions == stats["execution_count"]
    assert metrics.failure == 0 and metrics.error_rate == 0
    assert metrics.avg_batch_size == pytest.approx(stats["inference_count"] / stats["execution_count"])
    assert metrics.queue_us == pytest.approx(stats["inference_stats"]["queue"]["ns"] / 1000, abs=metrics.success)
    assert 0 <= metrics.queue_share <= 1


def test_summary_quantiles_need_summary_latencies(triton):
    metrics = read_metrics(triton.metrics_url)  # by URL, as the checker reads it
    p50 = quantile(metrics, "nv_inference_request_summary_us", 0.5, model="add_sub")
    p99 = quantile(metrics, "nv_inference_request_summary_us", 0.99, model="add_sub")
    assert p50 is not None and p99 is not None and 0 < p50 <= p99
    assert quantile(metrics, "nv_inference_request_summary_us", 0.95, model="other") is None

    from tritonlab.server import start_server

    with start_server() as plain:
        add_sub(plain, 3)
        families = parse_metrics(plain.metrics_text())
        assert "nv_inference_request_summary_us" not in families
        assert total(families, "nv_inference_request_success", model="add_sub") == 3
        assert ModelMetrics.from_metrics(families, "add_sub").quantiles_us == {}


def test_resources_and_absent_families(triton):
    found = resources(read_metrics(triton))
    assert 0 <= found["cpu_utilization"] <= 1 and found["cpu_memory_total_bytes"] > 0
    assert total(read_metrics(triton), "nv_no_such_metric") == 0.0
