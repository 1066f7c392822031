"""perf_analyzer from the tritonclient 2.51.0 wheel runs out of .venv/bin against the embedded server.

Stability is relaxed (-s 100): this proves the tool measures, on a noisy shared machine; bench/ takes figures.
"""

from __future__ import annotations

import csv
import subprocess

from conftest import VENV_BIN


def test_perf_analyzer_measures_the_example_model(server, tmp_path):
    report = tmp_path / "pa.csv"
    result = subprocess.run(
        [str(VENV_BIN / "perf_analyzer"), "-m", "add_sub", "-u", server.http_address, "-i", "http",
         "--concurrency-range", "2", "--measurement-interval", "1000", "-s", "100", "--max-trials", "5",
         "-f", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = list(csv.DictReader(report.open()))
    assert rows and float(rows[0]["Inferences/Second"]) > 50
    stats = server.model_stats("add_sub")["model_stats"][0]
    assert stats["inference_count"] > 50
