"""The nbgrader preprocessor's pieces: reading grade() calls, turning verdicts into nbgrader outputs, finding the
kernel's real server."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
from nbformat.v4 import new_code_cell
from nbgrader.utils import determine_grade

from conftest import wait_for
from tritonlab.checks.core import Result, ServerInfo, Status
from tritonlab.grading.nbgrader import GradeCall, box_server, grade_calls, verdict_outputs
from tritonlab.grading.sandbox import Box
from tritonlab.server.embedded import server_environment
from tritonlab.server.ports import free_ports
from tritonlab.server.staging import stage


def result(cid: str, status: Status, points: float) -> Result:
    return Result(cid, cid, status, "m", "h", points, points if status == Status.PASS else 0.0, 0.0)


def test_grade_calls_reads_ids_and_value_expressions_including_hidden_tests():
    source = (
        'grade("lab1.readiness_probe", probe=is_server_ready)\n### BEGIN HIDDEN TESTS\n'
        'grade("lab1.readiness_probe_strict", server=server)\n### END HIDDEN TESTS\n'
    )
    assert grade_calls(source) == [
        GradeCall("lab1.readiness_probe", {"probe": "is_server_ready"}),
        GradeCall("lab1.readiness_probe_strict", {}),
    ]
    assert grade_calls("grade(") == [] and grade_calls("check('x')") == []


def nbgrader_score(results: list[Result], points: float) -> float:
    cell = new_code_cell("", metadata={"nbgrader": {"grade": True, "solution": False, "points": points,
                                                    "grade_id": "t"}})  # fmt: skip
    cell.outputs = verdict_outputs(results)
    return determine_grade(cell)[0]


def test_verdicts_score_full_partial_and_zero():
    assert nbgrader_score([result("a", Status.PASS, 2), result("b", Status.PASS, 1)], 3) == 3
    assert nbgrader_score([result("a", Status.PASS, 2), result("b", Status.FAIL, 1)], 3) == 2
    assert nbgrader_score([result("a", Status.FAIL, 2), result("b", Status.UNATTEMPTED, 1)], 3) == 0


# --------------------------------------------------------------------------------- box_server: whose port is it
LOOK_ALIKE = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Agree(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Agree).serve_forever()
"""


def _start_staged(staged, repo, *endpoint_flags: str) -> subprocess.Popen:
    cmd = [str(staged.binary), f"--model-repository={repo}", f"--backend-directory={staged.backends}",
           f"--cache-directory={staged.caches}", *endpoint_flags]  # fmt: skip
    return subprocess.Popen(cmd, env=server_environment(staged), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def _listening(pid: int, port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
               for c in psutil.Process(pid).net_connections(kind="tcp"))  # fmt: skip


def test_box_server_trusts_only_ports_the_staged_triton_itself_listens_on(tmp_path, monkeypatch):
    box = Box(root=tmp_path / "box")
    monkeypatch.setenv("TRITONLAB_CACHE_DIR", str(box.cache))
    staged = stage()
    (tmp_path / "repo").mkdir()
    http, grpc, metrics, other = free_ports(4)
    endpoints = ["--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1",
                 f"--grpc-port={grpc}", "--metrics-address=127.0.0.1", f"--metrics-port={metrics}"]  # fmt: skip
    started: list[subprocess.Popen] = []
    try:
        # HTTP switched off, and a look-alike (a child of the same kernel) answering on the port the argv names
        started.append(_start_staged(staged, tmp_path / "repo", *endpoints, "--allow-http=false"))
        started.append(subprocess.Popen([sys.executable, "-c", LOOK_ALIKE, str(http)]))
        assert wait_for(lambda: _listening(started[0].pid, grpc) and _listening(started[1].pid, http), 60)
        assert box_server(box, os.getpid()) is None

        stop(started)

        # the same port named twice: Triton takes one of them, the grader cannot know which
        started.append(_start_staged(staged, tmp_path / "repo", *endpoints[:1], f"--http-port={other}",
                                     *endpoints[1:], "--allow-grpc=false", "--allow-metrics=false"))  # fmt: skip
        assert wait_for(lambda: _listening(started[0].pid, http) or _listening(started[0].pid, other), 60)
        assert box_server(box, os.getpid()) is None
        stop(started)

        # an honest server: every endpoint is its own socket
        started.append(_start_staged(staged, tmp_path / "repo", *endpoints))
        assert wait_for(lambda: all(_listening(started[0].pid, p) for p in (http, grpc, metrics)), 60)
        info = box_server(box, os.getpid())
        assert info == ServerInfo(f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}",
                                  f"http://127.0.0.1:{metrics}/metrics")  # fmt: skip
    finally:
        stop(started)


def stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        proc.kill()
        proc.wait()
    processes.clear()
