"""Submissions for a fake class, built from the real lab notebooks (labs/ filled with solutions/ answers)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]

TAMPER = """# Everything a learner could try from inside the kernel to turn a FAIL into a PASS.
import sys
import tritonlab.checks as checks
import tritonlab.checks.core as core
import tritonlab.checks.runner as runner

def always_pass(ids, workspace, server, timeout=180.0):
    return [core.Result(id=i, title=i, status=core.Status.PASS, message="ok", hint="", points=9, awarded=9,
                        seconds=0.0) for i in ids]

runner.run_isolated = always_pass
checks.run_isolated = always_pass
checks.grade = lambda *args, **kwargs: None
checks.check = lambda *args, **kwargs: None
core.run_checkpoint = lambda cp, ctx: always_pass([cp.id], None, None)[0]
get_ipython().showtraceback = lambda *args, **kwargs: None
sys.stderr = sys.stdout
"""

HANG = """import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignores the grader's interrupt
while True:
    time.sleep(0.5)
"""


def solution_sources(lab: str) -> dict[str, str]:
    solution = nbformat.read(REPO / "solutions" / f"{lab}.ipynb", as_version=4)
    sources = {}
    for cell in solution.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            sources[meta["grade_id"]] = re.sub(r"^\s*### (BEGIN|END) SOLUTION\n", "", cell.source, flags=re.M)
    return sources


def submission(lab: str, answers: dict[str, str] | None = None, prepend: str | None = None):
    """The released notebook with some solution cells answered (grade_id -> source) and maybe an extra cell."""
    notebook = nbformat.read(REPO / "labs" / f"{lab}.ipynb", as_version=4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if answers and grade_id in answers:
            cell.source = answers[grade_id]
    if prepend:
        notebook.cells.insert(1, nbformat.v4.new_code_cell(prepend))
    return notebook


def lab1_class(folder: Path) -> dict[str, float]:
    """Write the class into ``folder``; return the expected score of each student."""
    correct = solution_sources("01_setup")
    wrong = dict(correct)
    wrong["http_infer"] = "import numpy as np\nhttp_out0 = np.zeros((1, 4), np.float32)\nhttp_out1 = http_out0\n"
    wrong["metadata"] = 'server_version = "2.50.0"\nserver_extensions = []\n'
    wrong["probe"] = "def is_server_ready(url):\n    return True\n"
    hanging = dict(correct)
    hanging["grpc_infer"] = HANG
    students = {
        "alice_correct": (submission("01_setup", correct), 9.0),
        "bob_wrong": (submission("01_setup", wrong), 3.0),  # server_ready 1 + grpc 2
        "carol_untouched": (submission("01_setup"), 0.0),
        "dave_tamper": (submission("01_setup", prepend=TAMPER), 0.0),
        "erin_tamper_correct": (submission("01_setup", correct, prepend=TAMPER), 9.0),
        # the hung cell (grpc, 2 points) is lost; a fresh kernel runs the rest, where nothing is defined any more
        # (server, answers): metadata 1 too. What came before it counts: server_ready 1, probe 3, http 2.
        "frank_hangs": (submission("01_setup", hanging), 6.0),
    }
    for name, (notebook, _) in students.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, folder / name / "01_setup.ipynb")
    return {name: score for name, (_, score) in students.items()}


def print_grades(course: Path, lab: str, grades: list) -> None:
    """Each grade with its reason, and the end of nbgrader's log for one that failed (pytest shows this output
    with a failing test: a CI machine's reason is otherwise lost)."""
    for grade in grades:
        print(f"{grade.student}: {grade.score:g}/{grade.max_score:g} {grade.status} {grade.reason}")
        log = course / "logs" / lab / f"{grade.student}.log"
        if grade.status != "graded" and log.is_file():
            print("\n".join(f"    | {line}" for line in log.read_text(errors="replace").splitlines()[-60:]))
