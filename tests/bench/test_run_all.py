"""bench/run_all.py (`make bench`): the issue's keys, honest gaps, and every benchmark at a tiny size so none rots.

The docker and Prometheus benchmarks have their own tiny runs (tests/server/test_container.py,
tests/monitor/test_monitor_bench_script.py); the tiny suite run here skips those two. `make bench` itself (about
an hour) is not part of `make test`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import run_all  # noqa: E402


def tiny(test):
    """Each tiny run starts several servers and kernels: minutes on 2 cores, more on a busy machine."""
    return pytest.mark.slow(pytest.mark.timeout(1200)(test))


ISSUE_KEYS = [
    "setup.cold_s", "setup.rerun_s", "notebooks.total_s", "notebooks.lab1_s", "notebooks.lab2_s",
    "notebooks.lab3_s", "notebooks.lab4_s", "notebooks.lab5_s", "server.embedded_ready_s", "server.docker_ready_s",
    "client.ratio_c1", "client.ratio_c8", "client.ratio_c32", "serving.dynbatch_gain_c16_cpu",
    "serving.vs_naive_c16_cpu", "serving.dynbatch_gain_c64_h200", "serving.efficiency_h200",
    "llm.inflight_over_static_cpu", "llm.ttft_p50_ms_cpu", "llm.itl_p50_ms_cpu", "llm.inflight_over_static_h200",
    "grading.submissions_per_min",
]  # fmt: skip


def _check_shape(results: dict) -> None:
    assert set(results) == set(ISSUE_KEYS) | {f"{k}_meta" for k in ISSUE_KEYS}
    for key in ISSUE_KEYS:
        meta = results[f"{key}_meta"]
        assert {"command", "date", "machine", "status"} <= set(meta), key
        if results[key] is None:
            assert meta["status"] == "not measured" and meta["reason"], key
        else:
            assert meta["status"] == "measured" and meta["median"] == results[key] and "spread" in meta, key


def test_the_h200_figures_come_from_the_committed_files_and_a_missing_one_says_so(tmp_path):
    h200 = tmp_path / "h200"
    h200.mkdir()
    shutil.copy(REPO_ROOT / "bench" / "results" / "h200_lab3_serving.json", h200)
    results = run_all.aggregate(tmp_path / "no-cpu-results", {}, run_all.machine(), h200_dir=h200)
    _check_shape(results)
    lab3 = json.loads((h200 / "h200_lab3_serving.json").read_text())
    assert results["serving.dynbatch_gain_c64_h200"] == lab3["dynamic_batching"]["throughput_ratio"]
    assert results["serving.efficiency_h200"] == lab3["serving_efficiency"]["fraction"]
    assert results["serving.efficiency_h200_meta"]["date"]
    assert results["llm.inflight_over_static_h200"] is None
    assert "h200_llm_batching.json is absent" in results["llm.inflight_over_static_h200_meta"]["reason"]
    assert results["setup.cold_s"] is None and "absent" in results["setup.cold_s_meta"]["reason"]
    # an H200 LLM file in the benchmark's own format is read, not ignored
    shutil.copy(REPO_ROOT / "bench" / "results" / "cpu_llm_batching.json", h200 / "h200_llm_batching.json")
    results = run_all.aggregate(tmp_path / "no-cpu-results", {}, run_all.machine(), h200_dir=h200)
    ratio = json.loads((h200 / "h200_llm_batching.json").read_text())["throughput_ratio_inflight_over_static"]
    assert results["llm.inflight_over_static_h200"] == round(ratio["median"], 3)


def _tiny(out: Path, *args: str) -> tuple[dict, dict]:
    proc = subprocess.run([sys.executable, "bench/run_all.py", "--tiny", "--results-dir", str(out), *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=1100)  # fmt: skip
    steps = json.loads((out / "steps.json").read_text())
    failed = {name: (out / "logs" / f"{name}.log").read_text()[-3000:] for name, s in steps.items()
              if s["status"] == "failed"}  # fmt: skip
    assert proc.returncode == 0 and not failed, (proc.stdout[-3000:], failed)
    results = json.loads((out / "results.json").read_text())
    _check_shape(results)
    return steps, results


def _measured(results: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        assert results[key] is not None and results[key] > 0, (key, results[f"{key}_meta"])


@tiny
def test_the_llm_benchmark_runs_at_a_tiny_size(tmp_path):
    """Apart: bench/llm_batching.py always builds its engine cold (empty caches), the costliest tiny step. Four
    requests at concurrency 4: with max_batch_size 2 the engine build fails (torch.export specialises the batch dim)."""
    steps, results = _tiny(tmp_path / "results", "--only", "llm")
    assert steps["llm"]["status"] == "ok"
    _measured(results, ("llm.inflight_over_static_cpu", "llm.ttft_p50_ms_cpu", "llm.itl_p50_ms_cpu"))


@tiny
def test_every_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "results"
    steps, results = _tiny(out, "--skip", "docker", "prometheus", "llm")
    assert {name for name, s in steps.items() if s["status"] == "skipped"} == {"docker", "prometheus", "llm"}
    _measured(results, ("setup.rerun_s", "client.ratio_c1", "serving.dynbatch_gain_c16_cpu",
                        "serving.vs_naive_c16_cpu", "grading.submissions_per_min"))  # fmt: skip
    assert "step 'docker' was skipped" in results["server.docker_ready_s_meta"]["reason"]
    assert results["setup.cold_s"] is None  # the tiny size only re-runs setup
    notebooks = json.loads((out / "cpu_notebooks.json").read_text())
    assert notebooks["notebooks"]["00_welcome"]["green"] and notebooks["notebooks"]["00_welcome"]["profile"]["cells"]
    markdown = (out / "RESULTS.md").read_text()
    assert all(f"`{key}`" in markdown for key in ISSUE_KEYS)
    assert "not measured" in markdown and "### Notebook profile" in markdown
