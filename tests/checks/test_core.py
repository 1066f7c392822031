"""The checkpoint engine never crashes on bad learner state, and every outcome is a Result."""

from __future__ import annotations

import json

import pytest

from tritonlab.checks import store
from tritonlab.checks.core import Checkpoint, Context, Fail, ServerInfo, Status, resolve, run_checkpoint


def make(fn, needs_server=False):
    return Checkpoint("t.x", "a test checkpoint", 2.0, "the hint", fn, needs_server)


def test_pass_fail_unattempted_error_are_results(tmp_path):
    ctx = Context(tmp_path, None)
    assert run_checkpoint(make(lambda c: "fine"), ctx).status == Status.PASS

    def fails(c):
        raise Fail("found 3, expected 4")

    failed = run_checkpoint(make(fails), ctx)
    assert failed.status == Status.FAIL and failed.message == "found 3, expected 4"
    assert failed.hint == "the hint" and failed.awarded == 0 and failed.points == 2
    assert run_checkpoint(make(lambda c: c.value("x")), ctx).status == Status.UNATTEMPTED
    crashed = run_checkpoint(make(lambda c: 1 / 0), ctx)
    assert crashed.status == Status.ERROR and "ZeroDivisionError" in crashed.message


def test_missing_and_malformed_workspace_files_fail_helpfully(tmp_path):
    ctx = Context(tmp_path, None)
    missing = run_checkpoint(make(lambda c: c.read_json("results.json")), ctx)
    assert missing.status == Status.UNATTEMPTED and "results.json" in missing.message
    (tmp_path / "results.json").write_text('{"a": 1,,}')
    bad = run_checkpoint(make(lambda c: c.read_json("results.json")), ctx)
    assert bad.status == Status.FAIL and "line 1, column 9" in bad.message


def test_a_stopped_server_is_a_fail_not_a_crash(tmp_path):
    from tritonlab.server.ports import free_ports

    ctx = Context(tmp_path, ServerInfo(f"http://127.0.0.1:{free_ports(1)[0]}"))
    result = run_checkpoint(make(lambda c: str(c.server_get("/v2/health/ready")), needs_server=True), ctx)
    assert result.status == Status.FAIL and "does not answer" in result.message
    no_server = run_checkpoint(make(lambda c: "x", needs_server=True), Context(tmp_path, None))
    assert no_server.status == Status.FAIL and "no running Triton server" in no_server.message


def test_corrupt_state_files_are_ignored_not_fatal(tmp_path):
    state = tmp_path / store.STATE_DIR
    state.mkdir()
    (state / "submissions.json").write_text("[not, json")
    (state / "progress.json").write_text('"a string"')
    assert store.load_submissions(tmp_path) == {} and store.load_progress(tmp_path) == {}
    store.save_submission(tmp_path, "lab1.x", {"v": 1})
    assert json.loads((state / "submissions.json").read_text()) == {"lab1.x": {"v": 1}}


def test_resolve_labs_and_ids():
    lab1 = [cp.id for cp in resolve("lab1")]
    assert lab1[0] == "lab1.server_ready" and "lab1.readiness_probe_strict" in lab1
    assert [cp.id for cp in resolve("lab1.metadata")] == ["lab1.metadata"]
    with pytest.raises(KeyError, match="lab9"):
        resolve("lab9")
