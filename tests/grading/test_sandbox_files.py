"""Root's file work for a grading box never follows what the box's user planted, and never blocks the kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tritonlab.grading.nbgrader import save_submission_nofollow
from tritonlab.grading.sandbox import Box, _connection_file_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="gives files to another uid: needs root (CI is root)")
BOX_UID = 65010


def test_the_kernels_connection_file_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("the grader's file\n")
    connection = tmp_path / "kernel-1.json"
    connection.write_text('{"key": "k"}')
    box = Box(root=tmp_path / "box", uid=BOX_UID)
    box.home.mkdir(parents=True)
    (box.home / connection.name).symlink_to(victim)  # what a kernel does before dying, to be restarted
    command = _connection_file_for(box, ["python", "-f", str(connection)])
    copy = Path(command[-1])
    assert copy.parent == box.home and not copy.is_symlink()
    assert copy.read_text() == '{"key": "k"}' and copy.stat().st_uid == BOX_UID and copy.stat().st_mode & 0o777 == 0o600
    assert victim.read_text() == "the grader's file\n" and victim.stat().st_uid == 0


def test_submitted_values_are_written_for_the_kernel_and_a_blocked_state_file_costs_only_that_checkpoint(tmp_path):
    save_submission_nofollow(tmp_path, "lab1.server_ready", {"a": 1}, owner=BOX_UID)
    state = tmp_path / ".tritonlab"
    assert state.stat().st_uid == BOX_UID  # the kernel's own check() writes there later
    assert json.loads((state / "submissions.json").read_text()) == {"lab1.server_ready": {"a": 1}}
    blocked = tmp_path / "blocked"
    (blocked / ".tritonlab" / "submissions.json").mkdir(parents=True)
    save_submission_nofollow(blocked, "lab1.server_ready", {"a": 1}, owner=BOX_UID)  # no exception
    assert sorted(p.name for p in (blocked / ".tritonlab").iterdir()) == ["submissions.json"]


def test_clear_checker_kills_what_runs_as_the_checkers_uid_and_nothing_else(tmp_path):
    import subprocess

    from tritonlab.grading.sandbox import clear_checker

    def as_uid(uid: int) -> subprocess.Popen:
        return subprocess.Popen(["sleep", "60"], user=uid, group=uid, extra_groups=[], start_new_session=True)

    box = Box(root=tmp_path / "box", uid=BOX_UID, checker_uid=BOX_UID + 1)
    daemon, kernel = as_uid(BOX_UID + 1), as_uid(BOX_UID)
    try:
        assert clear_checker(box) == 1
        daemon.wait(timeout=5)  # gone (clear_checker reaped it already: it is our child here)
        assert kernel.poll() is None  # the kernel's own processes are close_box's business, at the end
    finally:
        for proc in (daemon, kernel):
            proc.kill()
            proc.wait()
