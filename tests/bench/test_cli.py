"""`tritonlab bench` as a learner runs it: a real process against a real server."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import VENV_BIN

CLI = str(VENV_BIN / "tritonlab")


def bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "bench", *args], capture_output=True, text=True, timeout=120, env=env)


def test_json_output(server):
    result = bench("add_sub", "--json", "--concurrency", "1:2:x2", "--url", server.http_url, "--grpc-url",
                   server.grpc_url, "--duration", "0.5", "--stability", "999", "--slo", "1000")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(r["tool"], r["concurrency"]) for r in data["rows"]] == [("perf_analyzer", 1), ("perf_analyzer", 2)]
    assert data["best_under_slo"]["throughput"] == max(r["throughput"] for r in data["rows"])


def test_table_save_and_plot_with_the_newest_server(server, tmp_path):
    """Without --url the newest registered server is used (the fixture's, in the isolated cache)."""
    results, png = tmp_path / "r.json", tmp_path / "curve.png"
    result = bench("add_sub", "--tool", "builtin", "--concurrency", "2", "--duration", "0.5", "--warmup", "0.2",
                   "--label", "base", "--save", str(results), "--plot", str(png), "--protocol", "http")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "infer/s" in result.stdout and "base" in result.stdout and "builtin" in result.stdout
    assert json.loads(results.read_text())["rows"][0]["protocol"] == "http" and png.stat().st_size > 0


def test_no_server_is_a_clear_error(tmp_path):
    result = bench("add_sub", env={**os.environ, "TRITONLAB_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "no running server" in result.stderr and "tritonlab up" in result.stderr and "Traceback" not in result.stderr


def test_bad_shape_argument(server):
    result = bench("add_sub", "--url", server.http_url, "--grpc-url", server.grpc_url, "--shape", "INPUT0")
    assert result.returncode == 1 and "NAME:d1,d2" in result.stderr
