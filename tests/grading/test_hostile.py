"""Grading under attack: one batch of hostile lab-1 submissions beside a clean one (see hostile_class.py).

Each hostile student gets the grade the honest part of their notebook deserves, the batch completes, the
gradebook and the grader's files are intact, nothing a submission started outlives its grading, and the clean
student graded in the same batch keeps full marks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import sysconfig
import time
from pathlib import Path

import psutil
import pytest
from fake_class import print_grades
from hostile_class import LAB, hostile_class

import tritonlab
from conftest import REPO_ROOT
from tritonlab.grading.course import grade_class

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # 16 notebooks, 2 at a time: ~5 min on 2 idle cores

PACKAGE = REPO_ROOT / "src" / "tritonlab"
SITE = Path(sysconfig.get_paths()["purelib"])
PLANTED = [PACKAGE / "checks" / "labs" / "zz_hostile.py", SITE / "zz_hostile.pth"]  # what write_grader_files tries


def tree_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([*(PACKAGE / "grading").glob("*.py"), *(REPO_ROOT / "graders").glob("*.py")]):
        digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the grader's box (its own uid per submission) needs root; run the suite as root, as CI does")
    root = tmp_path_factory.mktemp("hostile")
    expected = hostile_class(root / "submissions")
    course = root / "course"
    course.mkdir()
    (course / "canary.txt").write_text("canary\n")
    before = tree_digest()
    os.environ["TRITONLAB_CELL_TIMEOUT"] = "15"
    started = time.monotonic()
    try:
        grades = grade_class(root / "submissions", LAB, course, jobs=2, timeout=300, memory_bytes=2 * 2**30)
    finally:
        os.environ.pop("TRITONLAB_CELL_TIMEOUT")
        planted = [p for p in PLANTED if os.path.lexists(p)]
        for path in planted:
            path.unlink()
    print(f"hostile batch of {len(grades)} graded in {time.monotonic() - started:.0f} s")
    print_grades(course, LAB, grades)
    return {"course": course, "expected": expected, "grades": {g.student: g for g in grades}, "planted": planted,
            "digest": (before, tree_digest())}  # fmt: skip


def workspace(graded, student):
    return graded["course"] / "autograded" / student / LAB


def test_every_student_gets_the_grade_their_honest_work_deserves(graded):
    with (graded["course"] / "grades.csv").open() as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    got = {student: float(row["score"]) for student, row in rows.items()}
    assert got == graded["expected"], {s: (rows[s]["score"], rows[s]["status"], rows[s]["reason"]) for s in rows}
    assert all(float(row["max_score"]) == 9 for row in rows.values())
    # the batch completed: every submission was graded, none abandoned
    assert {s: g.status for s, g in graded["grades"].items()} == dict.fromkeys(graded["expected"], "graded")


def test_the_clean_student_in_the_same_batch_keeps_full_marks(graded):
    clean = graded["grades"]["clean"]
    assert (clean.score, clean.max_score, clean.reason) == (9.0, 9.0, "")


def test_the_grader_files_the_venv_and_the_gradebooks_are_intact(graded):
    attempts = json.loads((workspace(graded, "write_grader_files") / "attempts.json").read_text())
    assert len(attempts) == 12 and "done" not in attempts.values(), attempts
    assert all(outcome in ("PermissionError", "OperationalError", "FileNotFoundError") for outcome in attempts.values())
    assert graded["planted"] == []
    before, after = graded["digest"]
    assert before == after
    with sqlite3.connect(graded["course"] / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert (
            db.execute("SELECT count(*) FROM grade WHERE extra_credit > 0 OR manual_score IS NOT NULL").fetchone()[0]
            == 0
        )
        assert db.execute("SELECT name FROM assignment").fetchall() == [(LAB,)]
    assert (graded["course"] / "canary.txt").read_text() == "canary\n"  # the daemon's link was not followed
    assert not (workspace(graded, "fork_daemon") / f"{LAB}.ipynb").is_symlink()
    solution = (graded["course"] / "source" / LAB / f"{LAB}.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" in solution


def test_the_grader_cannot_be_signalled(graded):
    assert json.loads((workspace(graded, "signal_grader") / "signals.json").read_text()) == {
        "nbgrader": "PermissionError"
    }


def test_nothing_a_submission_started_outlives_its_grading(graded):
    daemon = int((workspace(graded, "fork_daemon") / "daemon.pid").read_text())
    bomb = [int(p) for p in (workspace(graded, "fork_bomb") / "bomb.pids").read_text().split()]
    assert len(bomb) == 100
    assert [pid for pid in [daemon, *bomb] if box_uid(pid)] == []


def box_uid(pid: int) -> bool:
    """Whether ``pid`` runs as a grading-box user (False for a pid that is gone, even mid-look)."""
    try:
        return psutil.Process(pid).uids().real >= 200_000
    except psutil.Error:
        return False


def test_hangs_and_a_dead_kernel_cost_only_their_cell(graded):
    grades = graded["grades"]
    assert "memory" in grades["fill_memory"].reason and "GiB" in grades["fill_memory"].reason
    for student in ("ignores_interrupt", "fill_memory"):
        notebook = json.loads((workspace(graded, student) / f"{LAB}.ipynb").read_text())
        errors = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]  # fmt: skip
        assert any(o["ename"] == "KernelRestarted" for o in errors), student
    assert tritonlab  # the package the checker imports is this checkout's
