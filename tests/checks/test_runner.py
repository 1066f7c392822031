"""The same verdicts from the notebook front end, the CLI, the isolated runner and the pytest graders."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from conftest import REPO_ROOT, VENV_BIN, add_sub_inputs
from tritonlab.checks import check, check_all, grade
from tritonlab.checks.core import ServerInfo, Status
from tritonlab.checks.labs.lab1 import INPUT0, INPUT1
from tritonlab.checks.runner import evaluate, run_isolated, server_of_process


def ready_probe(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def submit_lab1(server, workspace, probe=ready_probe):
    import tritonclient.http as httpclient

    a, b = np.array(INPUT0, np.float32), np.array(INPUT1, np.float32)
    result = server.http_client().infer("add_sub", add_sub_inputs(httpclient, a, b))
    meta = server.metadata()
    check("lab1.readiness_probe", server=server, workspace=workspace, probe=probe)
    for cid in ("lab1.http_inference", "lab1.grpc_inference"):
        check(cid, server=server, workspace=workspace, output0=result.as_numpy("OUTPUT0"),
              output1=result.as_numpy("OUTPUT1"))  # fmt: skip
    check("lab1.metadata", server=server, workspace=workspace, version=meta["version"], extensions=meta["extensions"])


def test_all_front_ends_agree(server, tmp_path):
    submit_lab1(server, tmp_path)
    info = ServerInfo(server.http_url, server.grpc_url, server.metrics_url)
    in_process = {r.id: r.status for r in evaluate(["lab1"], tmp_path, info, record=False)}
    isolated = {r.id: r.status for r in run_isolated(["lab1"], tmp_path, info)}
    notebook = {r.id: r.status for r in check_all("lab1", server=server, workspace=tmp_path)}
    cli = subprocess.run([str(VENV_BIN / "tritonlab"), "check", "lab1", "--workspace", str(tmp_path), "--server",
                          server.http_url, "--json"], capture_output=True, text=True)  # fmt: skip
    cli_verdicts = {r["id"]: Status(r["status"]) for r in json.loads(cli.stdout)}
    assert in_process == isolated == notebook == cli_verdicts
    assert set(in_process.values()) == {Status.PASS} and cli.returncode == 0

    graders = subprocess.run([sys.executable, "-m", "pytest", "graders", "-q", "-p", "no:cacheprovider", "--workspace",
                              str(tmp_path), "--server", server.http_url, "-k", "lab1"],
                             cwd=REPO_ROOT, capture_output=True, text=True)  # fmt: skip
    assert graders.returncode == 0 and f"{len(in_process)} passed" in graders.stdout, graders.stdout


def test_cli_and_graders_fail_the_same_checkpoints(server, tmp_path):
    def liar(url: str) -> bool:
        return True

    submit_lab1(server, tmp_path, probe=liar)
    cli = subprocess.run([str(VENV_BIN / "tritonlab"), "check", "lab1", "--workspace", str(tmp_path), "--server",
                          server.http_url, "--json"], capture_output=True, text=True)  # fmt: skip
    failed = {r["id"] for r in json.loads(cli.stdout) if r["status"] != "PASS"}
    assert cli.returncode == 1 and failed == {"lab1.readiness_probe", "lab1.readiness_probe_strict"}
    graders = subprocess.run([sys.executable, "-m", "pytest", "graders", "-q", "-p", "no:cacheprovider", "-rf",
                              "--workspace", str(tmp_path), "--server", server.http_url, "-k", "lab1"],
                             cwd=REPO_ROOT, capture_output=True, text=True)  # fmt: skip
    assert graders.returncode == 1 and "2 failed, 4 passed" in graders.stdout
    assert "returned True, expected False" in graders.stdout


def test_grade_raises_unless_pass_and_progress_is_recorded(tmp_path):
    with pytest.raises(AssertionError, match=r"lab1\.server_ready"):
        grade("lab1.server_ready", server="http://127.0.0.1:1", workspace=tmp_path)
    progress = json.loads((tmp_path / ".tritonlab" / "progress.json").read_text())
    assert progress["lab1.server_ready"]["status"] == "FAIL"
    rows = json.loads(subprocess.run([str(VENV_BIN / "tritonlab"), "progress", "--workspace", str(tmp_path), "--json"],
                                     capture_output=True, text=True).stdout)  # fmt: skip
    by_id = {r["id"]: r for r in rows}
    assert by_id["lab1.server_ready"]["status"] == "FAIL" and by_id["lab1.metadata"]["status"] == "NOT RUN"


def test_an_unknown_checkpoint_is_a_clear_error(tmp_path):
    from tritonlab.errors import TritonLabError

    with pytest.raises(TritonLabError, match=r"no checkpoint or lab named 'lab9\.typo'") as caught:
        check("lab9.typo", workspace=tmp_path)
    assert "tritonlab progress" in caught.value.fix


def test_server_of_process_reads_the_kernels_children(server):
    import os

    found = server_of_process(os.getpid())
    assert found is not None and found.http_url == server.http_url and found.grpc_url == server.grpc_url


def test_checker_process_ignores_a_shadowing_module_in_the_workspace(server, tmp_path):
    # A learner's file named like our package must not be imported by the isolated checker (python -I).
    (tmp_path / "tritonlab").mkdir()
    (tmp_path / "tritonlab" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    (result,) = run_isolated(["lab1.server_ready"], tmp_path, ServerInfo(server.http_url))
    assert result.status == Status.PASS
