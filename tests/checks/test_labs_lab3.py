"""Lab 3's checkpoints against a real server and real measurements: each passes on honest state and fails when the
results file is made up, the choice is wrong, or the server runs something else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonlab.bench import run_bench
from tritonlab.checks.core import ServerInfo, Status
from tritonlab.checks.labs.lab3 import LOAD_CONCURRENCY, MARGIN, RESULTS
from tritonlab.checks.runner import evaluate
from tritonlab.checks.store import save_submission
from tritonlab.labs import lab3
from tritonlab.server import start_server

NO_BATCHING = lab3.Variant("no batching")
BATCHING = lab3.Variant("batching", max_queue_delay_us=0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace after the lab's sweep: lab3_repo, lab3_results.json, the batching variant loaded on a live server."""
    root = tmp_path_factory.mktemp("lab3-ws")
    clf = lab3.build_classifier()
    lab3.prepare_repository(root / "lab3_repo", clf)
    lab3.export_torchscript(clf, root / "lab3_repo" / "classifier" / "1" / "model.pt")
    with start_server(root / "lab3_repo", model_control_mode="explicit") as server:
        server.load_model(lab3.ENSEMBLE)
        # The honest-choice test needs batching to beat no batching by the checkpoint's margin in the saved rows (the
        # checkpoint reads those, it does not measure again). On 2 cores one 1.5 s sweep gives 1.2-1.9x (median 1.66x
        # of 5 on this machine; 1.47x once in CI): measure again until the saved rows show the margin.
        for _ in range(8):
            table = lab3.sweep(server, clf, [NO_BATCHING, BATCHING], concurrency=[LOAD_CONCURRENCY], duration_s=1.5,
                               warmup_s=0.5, save_to=root / RESULTS, progress=False)  # fmt: skip
            by_label = {row.label: row for row in table}
            if by_label["batching"].throughput >= 1.05 * MARGIN * by_label["no batching"].throughput:
                break
        yield root, ServerInfo(server.http_url, server.grpc_url, server.metrics_url), server


def verdict(root: Path, server: ServerInfo, checkpoint_id: str, **values) -> tuple[Status, str]:
    if values:
        save_submission(root, checkpoint_id, values)
    (result,) = evaluate([checkpoint_id], root, server, record=False)
    return result.status, result.message


def rewrite(root: Path, edit) -> str:
    """Apply ``edit`` to the results file's rows; return the original text (to restore)."""
    path = root / RESULTS
    original = path.read_text()
    data = json.loads(original)
    edit(data["rows"])
    path.write_text(json.dumps(data))
    return original


def test_honest_results_are_consistent_and_made_up_ones_are_not(workspace):
    root, info, server = workspace
    assert verdict(root, info, "lab3.benchmark_consistent")[0] == Status.PASS
    # Requests of several samples each: throughput counts samples, Triton's success count requests.
    inputs = lab3.benchmark_inputs(lab3.build_classifier())
    run_bench(server, lab3.CLASSIFIER, tool="builtin", concurrency=4, batch_size=4, duration_s=1.0, warmup_s=0.3,
              inputs=inputs, label="batch of 4", save_to=root / RESULTS, progress=False)  # fmt: skip
    assert verdict(root, info, "lab3.benchmark_consistent")[0] == Status.PASS
    tampers = {
        "throughput doubled": lambda rows: rows[-1].update(throughput=rows[-1]["throughput"] * 2),
        "requests and throughput doubled together": lambda rows: rows[-1].update(
            throughput=rows[-1]["throughput"] * 2, requests=rows[-1]["requests"] * 2),
        "server counts inflated": lambda rows: [rows[-1]["server_stats"][k].update(
            success_count=rows[-1]["server_stats"][k]["success_count"] + 10**6) for k in ("before", "after")],
        "p99 below p50": lambda rows: rows[0].update(p99_ms=rows[0]["p50_ms"] / 2),
        "requests doubled, stats reads made slow to widen the slack": lambda rows: [
            rows[-1].update(throughput=rows[-1]["throughput"] * 2, requests=rows[-1]["requests"] * 2),
            rows[-1]["server_stats"].update(read_s=[5.0, 5.0])],
    }  # fmt: skip
    for name, tamper in tampers.items():
        original = rewrite(root, tamper)
        try:
            status, message = verdict(root, info, "lab3.benchmark_consistent")
        finally:
            (root / RESULTS).write_text(original)
        assert status == Status.FAIL, f"{name}: {message}"


def test_batching_observed_needs_the_servers_own_ratio(workspace):
    root, info, server = workspace
    stats = server.model_stats(lab3.CLASSIFIER)["model_stats"][0]
    ratio = int(stats["inference_count"]) / int(stats["execution_count"])
    assert ratio > 1
    assert verdict(root, info, "lab3.batching_observed", avg_batch=ratio)[0] == Status.PASS
    status, message = verdict(root, info, "lab3.batching_observed", avg_batch=ratio * 1.5)
    assert status == Status.FAIL and "server's statistics give" in message


def test_slo_choice_passes_only_for_the_best_loaded_config_within_the_slo(workspace):
    root, info, server = workspace
    rows = {r["label"]: r for r in json.loads((root / RESULTS).read_text())["rows"]}
    p99 = rows["batching"]["p99_ms"]
    status, message = verdict(root, info, "lab3.slo_choice", slo_p99_ms=p99 * 2, chosen="batching")
    assert status == Status.PASS, message
    status, message = verdict(root, info, "lab3.slo_choice", slo_p99_ms=p99 / 2, chosen="batching")
    assert status == Status.FAIL and "above your SLO" in message
    status, message = verdict(root, info, "lab3.slo_choice", slo_p99_ms=10**6, chosen="no batching")
    assert status == Status.FAIL, message
    assert verdict(root, info, "lab3.slo_choice", slo_p99_ms=p99 * 2, chosen="nonexistent")[0] == Status.FAIL
    lab3.load_variant(server, lab3.Variant("other", max_queue_delay_us=777))
    try:
        status, message = verdict(root, info, "lab3.slo_choice", slo_p99_ms=p99 * 2, chosen="batching")
        assert status == Status.FAIL and "not your choice" in message
    finally:
        lab3.load_variant(server, BATCHING)


def test_a_repository_without_model_pt_is_unattempted_and_a_wrong_file_fails(tmp_path):
    save_submission(tmp_path, "lab3.torchscript_export", {"hub_model": None})
    assert verdict(tmp_path, None, "lab3.torchscript_export")[0] == Status.UNATTEMPTED
    model_pt = tmp_path / "lab3_repo" / "classifier" / "1" / "model.pt"
    model_pt.parent.mkdir(parents=True)
    model_pt.write_bytes(b"not torchscript")
    status, message = verdict(tmp_path, None, "lab3.torchscript_export")
    assert status == Status.FAIL and "torch.jit.load" in message
