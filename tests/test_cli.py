"""The `tritonlab` command line, run as a learner runs it (a real process, real servers)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import psutil
import pytest

from conftest import VENV_BIN, wait_for

CLI = str(VENV_BIN / "tritonlab")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def test_up_detach_json_status_logs_down(example_repo):
    result = run("up", "--detach", "--json", "--repo", str(example_repo), "--model-control-mode", "explicit",
                 "--load-model", "add_sub")  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert {"http_url", "grpc_url", "metrics_url", "pid"} <= info.keys()
    assert info["http_url"].startswith("http://127.0.0.1:") and info["grpc_url"].startswith("grpc://127.0.0.1:")
    assert ready(info["http_url"])  # still running after the CLI exited

    rows = json.loads(run("status", "--json").stdout)
    row = next(r for r in rows if r["pid"] == info["pid"])
    assert row["ready"] and row["owner"] == "detached" and row["model_control_mode"] == "explicit"
    assert str(info["pid"]) in run("status").stdout

    log = run("logs", str(info["pid"]), "--tail", "200").stdout
    assert "successfully loaded 'add_sub'" in log

    down = run("down")
    assert down.returncode == 0 and f"stopped server {info['pid']}" in down.stdout
    assert wait_for(lambda: gone(info["pid"]), timeout=5)
    assert all(r["pid"] != info["pid"] for r in json.loads(run("status", "--json").stdout))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_up_in_the_foreground_stops_its_server_on_signal(sig):
    proc = subprocess.Popen([CLI, "up", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    assert ready(info["http_url"])
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0
    assert gone(info["pid"])


def test_up_stops_cleanly_when_signalled_right_after_it_announces():
    # A supervisor may signal as soon as it reads the ready line. On a busy machine the CLI used to be caught
    # between that line and its handler (exit 130, CI on a 2-core machine); busy loops recreate that here.
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        for _ in range(4):
            proc = subprocess.Popen([CLI, "up", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0, proc.communicate()[1]
            assert wait_for(lambda pid=info["pid"]: gone(pid), timeout=5)
    finally:
        for loop in busy:
            loop.kill()
            loop.wait()


def test_up_with_a_broken_repository_exits_1_with_tritons_reason(example_repo):
    (example_repo / "add_sub" / "1" / "model.py").write_text("def execute(:\n")
    result = run("up", "--repo", str(example_repo))
    assert result.returncode == 1
    assert "add_sub" in result.stderr and "SyntaxError" in result.stderr
    assert "fix:" in result.stderr and "Traceback" not in result.stderr


def test_up_rejects_an_unknown_mode_without_traceback():
    result = run("up", "--model-control-mode", "sometimes")
    assert result.returncode == 1 and "none, poll, explicit" in result.stderr and "Traceback" not in result.stderr


def test_logs_of_an_unknown_server_is_a_clear_error():
    result = run("logs", "12345678")
    assert result.returncode == 1 and "no running server with id 12345678" in result.stderr


def test_doctor_json_reports_every_check_and_a_working_server():
    result = run("doctor", "--json", timeout=180)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.returncode == 0, [c for c in checks.values() if c["status"] == "FAIL"]
    assert {"python", "perf_analyzer", "gpu", "docker", "embedded server"} <= checks.keys()
    assert all(c["status"] in ("OK", "WARN", "FAIL") for c in checks.values())
    assert checks["embedded server"]["status"] == "OK" and "Triton 2.51.0" in checks["embedded server"]["detail"]
    assert checks["package nvidia-pytriton"]["detail"] == "0.7.0"
    assert checks["perf_analyzer"]["status"] == "OK"
    for check in checks.values():
        assert check["status"] == "OK" or check["fix"], f"{check['name']} is not OK and gives no fix"
