"""The instructor flow on a small fake class: correct, wrong, untouched, tampering and hanging submissions."""

from __future__ import annotations

import csv
import json
import os
import zipfile

import pytest
from fake_class import lab1_class, print_grades

from tritonlab.grading.course import grade_class

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # 6 notebooks, 2 at a time (beyond 300 s on a loaded machine)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    expected = lab1_class(root / "folder")
    archive = root / "submissions.zip"  # instructors get a zip from their LMS
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (root / "folder").rglob("*.ipynb"):
            zf.write(path, path.relative_to(root / "folder"))
    os.environ["TRITONLAB_CELL_TIMEOUT"] = "15"
    try:
        grades = grade_class(archive, "01_setup", root / "course", jobs=2, timeout=180)
    finally:
        os.environ.pop("TRITONLAB_CELL_TIMEOUT")
    print_grades(root / "course", "01_setup", grades)  # shown with a failure: the reasons and failed logs
    return root / "course", expected, {g.student: g for g in grades}


def test_exported_grades_match_what_each_student_did(graded):
    course, expected, _ = graded
    with (course / "grades.csv").open() as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(expected)
    for student, score in expected.items():
        assert float(rows[student]["score"]) == score, (student, rows[student])
        assert float(rows[student]["max_score"]) == 9


def test_tampering_changes_nothing(graded):
    _, _, grades = graded
    assert grades["dave_tamper"].score == grades["carol_untouched"].score == 0
    assert grades["erin_tamper_correct"].score == grades["alice_correct"].score == 9


def test_a_hanging_cell_costs_what_depends_on_it_and_the_batch_goes_on(graded):
    course, _, grades = graded
    frank = grades["frank_hangs"]
    assert frank.status == "graded" and frank.score == 6  # server_ready, probe, http: before the hung cell
    assert all(g.status == "graded" for g in grades.values())
    log = (course / "logs" / "01_setup" / "frank_hangs.log").read_text()  # nbgrader's own account, kept
    assert "restarting the kernel" in log and "ignored the interrupt" in log
    notebook = json.loads((course / "autograded" / "frank_hangs" / "01_setup" / "01_setup.ipynb").read_text())
    (restarted,) = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("ename") == "KernelRestarted"]
    assert "ignored the interrupt" in restarted["evalue"]


def test_feedback_shows_verdicts_but_no_hidden_test_source(graded):
    course, _, _ = graded
    html = (course / "feedback" / "alice_correct" / "01_setup" / "01_setup.html").read_text()
    assert "tritonlab-card tritonlab-pass" in html
    assert "HIDDEN TESTS" not in html and "grade(&quot;lab1.readiness_probe_strict" not in html
    assert 'grade("lab1.readiness_probe_strict' not in html
    autograded = (course / "autograded" / "alice_correct" / "01_setup" / "01_setup.ipynb").read_text()
    assert "lab1.readiness_probe_strict" in autograded  # the hidden test did run


def test_stderr_warnings_do_not_zero_a_passing_cell(graded):
    # Every kernel in this class prints a TCP warning on stderr and the probe check logs; a passing test cell
    # still gets full points (alice's 9/9 above). Here: the autograded test cells hold no stderr stream.
    course, _, _ = graded
    import json

    notebook = json.loads((course / "autograded" / "alice_correct" / "01_setup" / "01_setup.ipynb").read_text())
    test_cells = [c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert test_cells and all(
        not (o.get("output_type") == "stream" and o.get("name") == "stderr") for c in test_cells for o in c["outputs"]
    )
