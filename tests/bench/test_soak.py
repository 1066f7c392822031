"""bench/soak.py cannot rot: a few seconds of the soak against the real lab-3 deployment, figures written."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_a_short_soak_fails_no_request_and_reports_server_memory(tmp_path):
    out = tmp_path / "soak.json"
    command = [sys.executable, "bench/soak.py", "--duration-s", "8", "--concurrency", "16", "--warmup-s", "3",
               "--window-s", "2", "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    figures = json.loads(out.read_text())
    assert "bench/soak.py --duration-s 8 --concurrency 16" in figures["command"] and figures["date"]
    assert figures["machine"]["cpus"] == psutil.cpu_count() and figures["load"]["concurrency"] == 16
    assert figures["requests"] > 0 and figures["failed_requests"]["client"] == 0
    assert figures["failed_requests"]["server"] == dict.fromkeys(figures["failed_requests"]["server"], 0)
    # every request the client counted went through the whole ensemble, by Triton's own counters
    assert set(figures["server_success"].values()) == {figures["requests"]}
    memory = figures["server_rss"]
    assert memory["processes_end"] == 4  # tritonserver and the python stubs of tokenizer, classifier, postprocess
    assert set(memory["end_mib_by_process"]) == {"tritonserver", "triton_python_backend_stub"}
    assert 100 < memory["steady_state_mib"] < 4096 and abs(memory["growth_pct"]) < 5
    assert len(figures["rss_series_mib"]) >= 10 and figures["gate"]["passed"]
    assert sum(w["requests"] for w in figures["windows"]) == figures["requests"]
