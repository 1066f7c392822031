"""The nbgrader preprocessor's pieces: reading grade() calls, turning verdicts into nbgrader outputs."""

from __future__ import annotations

from nbformat.v4 import new_code_cell
from nbgrader.utils import determine_grade

from tritonlab.checks.core import Result, Status
from tritonlab.grading.nbgrader import GradeCall, grade_calls, verdict_outputs


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
