"""Lab 4's checkpoints against a real Triton and a real Prometheus: each passes on honest answers and fails on
wrong queries, rules that fire at the wrong time, a wrong diagnosis, and fixes that are not measured or not better."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tritonlab.checks.core import ServerInfo, Status
from tritonlab.checks.runner import evaluate
from tritonlab.checks.store import save_submission
from tritonlab.labs import lab4
from tritonlab.monitor import SUMMARY_LATENCIES, ModelMetrics, Prometheus, prometheus_available
from tritonlab.server import start_server

# Skips where Prometheus is missing, except under CI (which installs it): there a missing Prometheus fails.
pytestmark = pytest.mark.skipif(not prometheus_available() and not os.environ.get("CI"),
                                reason="prometheus not installed (env/system.sh)")  # fmt: skip

ENC = 'model="encoder"'
GOOD_QUERIES = {
    "throughput": f"sum(rate(nv_inference_count{{{ENC}}}[5s]))",
    "error_rate": f"sum(rate(nv_inference_request_failure{{{ENC}}}[5s])) / (sum(rate(nv_inference_request_failure"
    f"{{{ENC}}}[5s])) + sum(rate(nv_inference_request_success{{{ENC}}}[5s])))",
    "avg_batch_size": f"sum(rate(nv_inference_count{{{ENC}}}[5s])) / sum(rate(nv_inference_exec_count{{{ENC}}}[5s]))",
    "p95_latency_ms": f'max(nv_inference_request_summary_us{{{ENC},quantile="0.95"}}) / 1000',
}
GOOD_RULES = """groups:
  - name: triton
    rules:
      - alert: TritonDown
        expr: up{job="triton"} == 0
        for: 2s
      - alert: TritonHighErrorRate
        expr: sum by (model) (rate(nv_inference_request_failure[5s])) / (sum by (model)
          (rate(nv_inference_request_failure[5s])) + sum by (model) (rate(nv_inference_request_success[5s]))) > 0.1
        for: 2s
      - alert: TritonHighQueueLatency
        expr: sum by (model) (rate(nv_inference_queue_duration_us[5s]))
          / sum by (model) (rate(nv_inference_request_success[5s])) / 1000 > 50
        for: 2s
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A workspace as the lab leaves it before the diagnosis: server, Prometheus, mysteries measured 'before'."""
    root = tmp_path_factory.mktemp("lab4-ws")
    lab4.prepare_repository(root / "lab4_repo", seed=0)
    with start_server(root / "lab4_repo", model_control_mode="explicit", models=lab4.MODELS,
                      extra_args=SUMMARY_LATENCIES, exit_timeout=1) as server, Prometheus(server) as prom:  # fmt: skip
        prom.wait_first_scrape()
        before = {m: lab4.measure(server, m, "before", save_to=root / lab4.RESULTS) for m in lab4.MYSTERY}
        yield root, ServerInfo(server.http_url, server.grpc_url, server.metrics_url), server, before


def verdict(root: Path, server: ServerInfo | None, checkpoint_id: str, **values) -> tuple[Status, str]:
    if values:
        save_submission(root, checkpoint_id, values, replace=True)
    (result,) = evaluate([checkpoint_id], root, server, record=False)
    return result.status, result.message


def test_promql_passes_the_right_queries_and_fails_plausible_mistakes(lab):
    root, info, _, _ = lab
    status, message = verdict(root, info, "lab4.promql", queries=GOOD_QUERIES)
    assert status == Status.PASS, message
    mistakes = {
        "requests, not inferences": {"throughput": f"sum(rate(nv_inference_request_success{{{ENC}}}[5s]))"},
        "failures over successes": {"error_rate": f"sum(rate(nv_inference_request_failure{{{ENC}}}[5s])) / "
                                                  f"sum(rate(nv_inference_request_success{{{ENC}}}[5s]))"},
        "requests per execution": {"avg_batch_size": f"sum(rate(nv_inference_request_success{{{ENC}}}[5s])) / "
                                                     f"sum(rate(nv_inference_exec_count{{{ENC}}}[5s]))"},
        "the median": {"p95_latency_ms": f'max(nv_inference_request_summary_us{{{ENC},quantile="0.5"}}) / 1000'},
        "microseconds": {"p95_latency_ms": f'max(nv_inference_request_summary_us{{{ENC},quantile="0.95"}})'},
        "a constant": {"throughput": "vector(123456)"},  # far from any throughput this model reaches
        "a syntax error": {"throughput": f"sum(rate(nv_inference_count{{{ENC}}}[5s])"},
    }  # fmt: skip
    for name, change in mistakes.items():
        status, message = verdict(root, info, "lab4.promql", queries={**GOOD_QUERIES, **change})
        assert status == Status.FAIL, f"{name}: {message}"
    status, message = verdict(root, info, "lab4.promql", queries={"throughput": "up"})
    assert status == Status.FAIL and "exactly the keys" in message


def test_promql_needs_a_prometheus_scraping_this_server(tmp_path):
    with start_server(extra_args=SUMMARY_LATENCIES) as other:
        info = ServerInfo(other.http_url, other.grpc_url, other.metrics_url)
        status, message = verdict(tmp_path, info, "lab4.promql", queries=GOOD_QUERIES)
    assert status == Status.FAIL and "no Prometheus" in message


def test_rules_valid_and_alerts_fire_only_for_rules_that_track_their_condition(tmp_path):
    rules = tmp_path / lab4.RULES
    assert verdict(tmp_path, None, "lab4.rules_valid")[0] == Status.UNATTEMPTED
    rules.write_text(GOOD_RULES.replace('up{job="triton"} == 0', 'up{job="triton"} =='))
    status, message = verdict(tmp_path, None, "lab4.rules_valid")
    assert status == Status.FAIL and f"{lab4.RULES}: 5:" in message
    rules.write_text(GOOD_RULES)
    assert verdict(tmp_path, None, "lab4.rules_valid")[0] == Status.PASS
    status, message = verdict(tmp_path, None, "lab4.alerts_fire")
    assert status == Status.PASS, message
    # An error alert that fires on any traffic is active while all is healthy.
    rules.write_text(GOOD_RULES.replace(") > 0.1", ") >= 0"))
    status, message = verdict(tmp_path, None, "lab4.alerts_fire")
    assert status == Status.FAIL and "healthy" in message, message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("/ 1000 > 50", "/ 1000 > 5000"), "never reached 'firing'"),  # a threshold the queue never reaches
        (('up{job="triton"} == 0', 'up{job="triton"} == 1'), "while everything was healthy"),
        (("alert: TritonDown", "alert: ServerDown"), "no alerting rule named TritonDown"),
        (("for: 2s", "for: 5m"), "longer than"),
    ],
    ids=["queue threshold unreachable", "down alert on a live server", "wrong name", "for too long"],
)
def test_alerts_fire_fails_wrong_rules(tmp_path, change, words):
    (tmp_path / lab4.RULES).write_text(GOOD_RULES.replace(*change))
    status, message = verdict(tmp_path, None, "lab4.alerts_fire")
    assert status == Status.FAIL and words in message, message


def test_diagnosis_and_fixes(lab):
    root, info, server, before = lab
    shares = {m: ModelMetrics.read(server, m).queue_share for m in lab4.MYSTERY}
    truth = {m: "queue-bound" if s > 0.5 else "compute-bound" for m, s in shares.items()}
    swapped = dict(zip(lab4.MYSTERY, reversed(list(truth.values())), strict=True))
    assert verdict(root, info, "lab4.diagnosis", diagnosis=truth, queue_share=shares)[0] == Status.PASS
    status, message = verdict(root, info, "lab4.diagnosis", diagnosis=swapped, queue_share=shares)
    assert status == Status.FAIL and "is not" in message
    wrong_shares = {m: 1 - s for m, s in shares.items()}
    status, message = verdict(root, info, "lab4.diagnosis", diagnosis=truth, queue_share=wrong_shares)
    assert status == Status.FAIL and "queue share" in message

    # No 'after' rows yet: nothing to judge.
    assert verdict(root, info, "lab4.fixes", speedup={})[0] == Status.UNATTEMPTED
    # Reloading the same mis-tuned deployment is no fix.
    for model in truth:
        same = lab4.loaded_deployment(server, model)
        lab4.load_deployment(server, same)
        lab4.measure(server, model, "after", save_to=root / lab4.RESULTS)
    status, message = verdict(root, info, "lab4.fixes", speedup={m: 1.0 for m in lab4.MYSTERY})
    assert status == Status.FAIL and "still runs a mis-tuned deployment" in message

    fixed = {}
    for model in truth:
        now = lab4.loaded_deployment(server, model)
        fixed[model] = lab4.Deployment(model, batching=True, instances=now.instances, pad_to=0)
        lab4.load_deployment(server, fixed[model])
        lab4.measure(server, model, "after", save_to=root / lab4.RESULTS)
    rows = {r["model"]: r for r in json.loads((root / lab4.RESULTS).read_text())["rows"] if r["label"] == "after"}
    speedup = {m: rows[m]["throughput"] / before[m].throughput for m in lab4.MYSTERY}
    status, message = verdict(root, info, "lab4.fixes", speedup=speedup)
    assert status == Status.PASS, message
    status, message = verdict(root, info, "lab4.fixes", speedup={m: 2 * s for m, s in speedup.items()})
    assert status == Status.FAIL and "you computed a speedup" in message
    # The measured fix must be what the server runs.
    model = lab4.MYSTERY[0]
    lab4.load_deployment(server, lab4.Deployment(model, batching=True, instances=3))
    status, message = verdict(root, info, "lab4.fixes", speedup=speedup)
    assert status == Status.FAIL and "not as your measured fix" in message
    lab4.load_deployment(server, fixed[model])
    # A made-up 'after' row (throughput doubled) is inconsistent with the server's own counts.
    path = root / lab4.RESULTS
    data = json.loads(path.read_text())
    data["rows"][-1]["throughput"] *= 2
    path.write_text(json.dumps(data))
    status, message = verdict(root, info, "lab4.fixes", speedup=speedup)
    assert status == Status.FAIL, message
