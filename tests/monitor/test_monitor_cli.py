"""`tritonlab monitor up|status|down` as a learner runs them, against a real Triton."""

from __future__ import annotations

import json
import subprocess

import psutil
from monitor_fixtures import needs_prometheus, start_triton

from conftest import VENV_BIN, wait_for

pytestmark = needs_prometheus


def tritonlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "tritonlab"), *args], capture_output=True, text=True, timeout=120)


def test_up_detached_status_and_down():
    with start_triton() as triton:
        up = tritonlab("monitor", "up", "--server", triton.metrics_url, "--detach", "--json")
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert info["url"].startswith("http://127.0.0.1:") and info["targets"] == [triton.metrics_url]
        assert 0 < info["first_scrape_s"] < 15
        status = json.loads(tritonlab("monitor", "status", "--json").stdout)
        assert [(r["pid"], r["owner"]) for r in status] == [(info["pid"], "detached")]
        down = json.loads(tritonlab("monitor", "down", "--json").stdout)
        assert down["stopped"] == [info["pid"]]
        assert wait_for(lambda: not psutil.pid_exists(info["pid"]), timeout=10)
        assert json.loads(tritonlab("monitor", "status", "--json").stdout) == []


def test_latest_server_by_default_and_clear_errors():
    none = tritonlab("monitor", "up", "--detach")
    assert none.returncode == 1 and "no running tritonlab server" in none.stderr and "fix:" in none.stderr
    bad = tritonlab("monitor", "up", "--server", "http://127.0.0.1:1", "--detach")
    assert bad.returncode == 1 and "not a metrics URL" in bad.stderr
    with start_triton() as triton:
        up = tritonlab("monitor", "up", "--latest", "--detach", "--json")
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["targets"] == [triton.metrics_url]
        assert tritonlab("monitor", "down").returncode == 0
