"""Submitted functions run in a worker process of their own (checks.learner), and the checker's verdict travels on
a descriptor of its own: what a learner's function prints, how it exits, what it leaves running and how long it
hangs cannot turn a FAIL into a PASS. Real submissions through the real isolated checker (run_isolated)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tritonlab.checks import store
from tritonlab.checks.core import ServerInfo, Status, resolve
from tritonlab.checks.learner import LearnerError, Worker, call_learner
from tritonlab.checks.runner import run_isolated
from tritonlab.checks.values import SubmittedFunction, decode, encode
from tritonlab.engine.serving.client import StreamRecord
from tritonlab.labs.lab5 import RESULTS

LAB1 = ("lab1.readiness_probe", "probe", "is_server_ready")
LAB5 = ("lab5.token_metrics", "token_latencies", "token_latencies")


def forged_verdict(checkpoint_id: str) -> str:
    """Full marks, in exactly the JSON shape the checker writes."""
    (cp,) = resolve(checkpoint_id)
    result = {"id": cp.id, "title": cp.title, "status": "PASS", "message": "forged", "hint": "",
              "points": cp.points, "awarded": cp.points, "seconds": 0.1, "checked_at": time.time()}  # fmt: skip
    return json.dumps([result])


def hostile_source(kind: str, name: str, forged: str, marker: Path) -> str:
    """A function named ``name`` taking any arguments, hostile in the way ``kind`` says."""
    body = {
        "prints_a_forged_verdict_and_exits": f"    print({forged!r}, flush=True)\n    os._exit(0)\n",
        "leaves_a_daemon_that_forges_later": (
            "    child = os.fork()\n"
            "    if child == 0:\n"
            "        os.setsid()  # out of the worker's session, which is killed after the call\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(1)\n"
            f"            print({forged!r}, flush=True)\n"
            f"            open({str(marker)!r}, 'w').close()\n"
            "        os._exit(0)\n"
            "    os.waitpid(child, 0)\n"
            "    return {'ttft_ms': 0.0, 'itl_ms': 0.0} if len(args) == 2 else True\n"
        ),
        "hangs": "    while True:\n        pass\n",
        "raises": "    raise RuntimeError('boom')\n",
    }
    if kind == "forges_while_being_defined":  # runs when the source is exec'd, before any call
        return f"import os\ndef {name}(*args, _=print({forged!r}, flush=True) or os._exit(0)):\n    return True\n"
    return f"import os\nimport time\ndef {name}(*args):\n{body[kind]}"


EXPECTED = {
    "prints_a_forged_verdict_and_exits": "exited (status 0) before it returned",
    "forges_while_being_defined": "exited (status 0) before it returned",
    "leaves_a_daemon_that_forges_later": {LAB1[0]: "returned True, expected False", LAB5[0]: "ttft_ms 0.0"},
    "hangs": "did not return within",
    "raises": "RuntimeError: boom",
}


def submit_source(workspace: Path, lab: tuple[str, str, str], source: str) -> None:
    checkpoint_id, value, name = lab
    function = {"__function__": name, "source": source, "globals": {}}
    store.save_submission(workspace, checkpoint_id, {value: function}, replace=True)


def write_records(workspace: Path) -> None:
    """Two streamed requests, as lab 5's measure_batching saves them."""
    records = [
        StreamRecord("p", 3, sent=1.0, token_times=[1.2, 1.3, 1.5]),
        StreamRecord("q", 1, sent=2.0, token_times=[2.05]),
    ]
    (workspace / RESULTS).write_text(json.dumps({"inflight": {"records": [asdict(r) for r in records]}}))


def token_latencies(sent, token_times):
    ttft_ms = (token_times[0] - sent) * 1000
    if len(token_times) < 2:
        return {"ttft_ms": ttft_ms, "itl_ms": None}
    return {"ttft_ms": ttft_ms, "itl_ms": (token_times[-1] - token_times[0]) / (len(token_times) - 1) * 1000}


def judge_hostile(workspace: Path, lab: tuple[str, str, str], kind: str, server: ServerInfo | None) -> None:
    write_records(workspace)
    marker = workspace / "daemon_printed"
    submit_source(workspace, lab, hostile_source(kind, lab[2], forged_verdict(lab[0]), marker))
    (result,) = run_isolated([lab[0]], workspace, server)
    expected = EXPECTED[kind] if isinstance(EXPECTED[kind], str) else EXPECTED[kind][lab[0]]
    assert result.status == Status.FAIL and expected in result.message, result.message
    assert result.awarded == 0 and "forged" not in result.message
    if kind == "leaves_a_daemon_that_forges_later":  # it did print, after the checker's end: nobody heard it
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the daemon never ran: this test proves nothing"


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_hostile_readiness_probe_fails_and_cannot_forge_the_verdict(server, tmp_path, kind):
    judge_hostile(tmp_path, LAB1, kind, ServerInfo(server.http_url))


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_hostile_token_latencies_fails_and_cannot_forge_the_verdict(tmp_path, kind):
    judge_hostile(tmp_path, LAB5, kind, None)


def test_honest_token_latencies_pass_in_the_isolated_checker(tmp_path):
    write_records(tmp_path)
    store.save_submission(tmp_path, LAB5[0], {LAB5[1]: encode(token_latencies)}, replace=True)
    (result,) = run_isolated([LAB5[0]], tmp_path, None)
    assert result.status == Status.PASS, result.message


def rebuilt(fn) -> SubmittedFunction:
    """As the checker reads a submitted function back: data, never code it runs."""
    function = decode(json.loads(json.dumps(encode(fn))))
    assert isinstance(function, SubmittedFunction)
    return function


def chatty(x):
    print("on the worker's stdout", x)
    os.write(2, b"and its stderr\n")
    return {"x": x, "nan": float("nan"), "none": None, "list": [1, "a"]}


def returns_a_set(x):
    return {x}


def returns_numpy(n):
    import numpy as np

    return {"ready": np.True_, "mean": np.float64(0.5), "gaps": np.arange(n, dtype=np.float32) / 2}


def raises_its_own(x):
    class ProbeBroke(Exception):
        pass

    raise ProbeBroke(f"cannot reach {x}")


def leaves_a_child(path):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    Path(path).write_text(str(child.pid))
    return child.pid


def test_values_and_errors_come_back_as_data_and_the_worker_is_silent(capfd):
    value, error, seconds = call_learner(rebuilt(chatty), 3, limit=30)
    assert error is None and seconds is not None and seconds < 30
    assert value["x"] == 3 and math.isnan(value["nan"]) and value["none"] is None and value["list"] == [1, "a"]
    assert capfd.readouterr() == ("", "")  # nothing from the worker reaches the checker's stdout or stderr
    value, error, _ = call_learner(rebuilt(returns_numpy), 3, limit=30)  # numpy values arrive as plain ones
    assert error is None and value == {"ready": True, "mean": 0.5, "gaps": [0.0, 0.5, 1.0]}
    value, error, _ = call_learner(rebuilt(returns_a_set), 1, limit=30)
    assert value is None and type(error).__name__ == "ReturnValueError" and "returned a set" in str(error)
    _, error, _ = call_learner(rebuilt(raises_its_own), "h:1", limit=30)
    assert isinstance(error, LearnerError) and type(error).__name__ == "ProbeBroke" and str(error) == "cannot reach h:1"
    broken = SubmittedFunction("f", "def f(:\n", {})
    _, error, seconds = call_learner(broken, limit=30)
    assert type(error).__name__ == "SyntaxError" and seconds is not None


def test_a_hang_times_out_and_nothing_the_call_started_outlives_it(tmp_path):
    started = time.monotonic()
    assert call_learner(SubmittedFunction("f", "def f():\n    while True:\n        pass\n", {}), limit=1) == (
        None, None, None,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    pid_file = tmp_path / "child.pid"
    pid, error, _ = call_learner(rebuilt(leaves_a_child), str(pid_file), limit=30)
    assert error is None and pid == int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the worker's child outlived the call"


def pid_or_hang(hang):
    while hang:
        pass
    return os.getpid()


def test_a_worker_serves_many_calls_and_a_new_one_follows_a_hang():
    with Worker(rebuilt(pid_or_hang)) as worker:
        first, _, _ = worker.call(False, limit=30)
        second, _, _ = worker.call(False, limit=30)
        assert first == second != os.getpid()  # one process for both calls, not this one
        assert worker.call(True, limit=1) == (None, None, None)
        assert not _alive(first)
        third, error, _ = worker.call(False, limit=30)
        assert error is None and third not in (first, os.getpid())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


PRY_INTO_THE_CHECKER = """
def token_latencies(sent, token_times):
    import os
    outcomes = []
    checker = os.getppid()
    try:
        fds = os.listdir(f"/proc/{checker}/fd")
    except OSError as e:
        fds, outcomes = [], [f"listing: {type(e).__name__}"]
    for fd in fds:
        try:
            with open(f"/proc/{checker}/fd/{fd}", "w") as handle:
                handle.write(FORGED + "\\\\n")
            outcomes.append(f"wrote fd {fd}")
        except OSError as e:
            outcomes.append(f"fd {fd}: {type(e).__name__}")
    print(FORGED, flush=True)
    return {"ttft_ms": "; ".join(outcomes), "itl_ms": None}
"""


def test_in_the_grading_box_a_function_cannot_reach_the_checkers_descriptors(public_tmp, monkeypatch):
    """As graded: the checker under its own uid, not dumpable, so its worker (same uid) cannot open its fds."""
    from tritonlab.grading import sandbox
    from tritonlab.grading.nbgrader import judge_in_box

    if os.geteuid() != 0:
        pytest.fail("the grader's box (its own uids) needs root; run the suite as root, as CI does")
    workspace = public_tmp / "autograded" / "student"
    workspace.mkdir(parents=True)
    box = sandbox.open_box(public_tmp / "box", workspaces=public_tmp / "autograded")
    monkeypatch.setenv(sandbox.ENV, box.environment()[sandbox.ENV])
    try:
        write_records(workspace)
        source = f"FORGED = {forged_verdict(LAB5[0])!r}\n" + PRY_INTO_THE_CHECKER
        submit_source(workspace, LAB5, source)
        (result,) = judge_in_box(box, [LAB5[0]], workspace, None)
    finally:
        sandbox.close_box(box)
    assert result.status == Status.FAIL and "forged" not in result.message, result.message
    assert "listing: PermissionError" in result.message and "wrote" not in result.message, result.message
