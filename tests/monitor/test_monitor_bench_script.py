"""bench/prometheus_scrape.py at its smallest size: one real start, its figures written as JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from monitor_fixtures import needs_prometheus

from conftest import REPO_ROOT


@needs_prometheus
def test_one_run_writes_first_scrape_figures(tmp_path):
    out = tmp_path / "scrape.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "prometheus_scrape.py"), "--runs", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    ready, first = result["start_to_ready"], result["start_to_first_scrape"]
    assert ready["n"] == first["n"] == 1
    assert 0 < ready["median_s"] < first["median_s"] < 30
    assert re.search(r"version 2\.\d+\.\d+", result["prometheus"]), result["prometheus"]  # the binary's own version
