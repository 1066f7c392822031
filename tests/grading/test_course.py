"""Course CI both ways: every solution passes all its checkpoints; every released lab passes none."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from conftest import REPO_ROOT, VENV_BIN
from tritonlab.checks.core import CHECKPOINTS, Status, load_all
from tritonlab.grading.course import lab_names, stale_labs
from tritonlab.grading.run import run_notebook, solution_names

LABS = lab_names()
load_all()


def test_labs_are_what_the_solutions_generate():
    assert stale_labs() == [], "labs/ is out of date: run `tritonlab course build` (make labs)"


def test_hidden_tests_are_in_solutions_only():
    solution = (REPO_ROOT / "solutions" / "01_setup.ipynb").read_text()
    released = (REPO_ROOT / "labs" / "01_setup.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" in solution and "lab1.readiness_probe_strict" in solution
    assert "HIDDEN" not in released and "readiness_probe_strict" not in released
    assert "BEGIN SOLUTION" not in released and "raise NotImplementedError()" in released


@pytest.mark.parametrize("lab", LABS)
def test_solution_passes_every_checkpoint(lab, tmp_path):
    notebook = shutil.copy(REPO_ROOT / "solutions" / f"{lab}.ipynb", tmp_path)
    run = run_notebook(notebook, tmp_path)
    assert run.errors == [], run.errors
    failing = {cid: (r.status, r.message) for cid, r in run.results.items() if r.status != Status.PASS}
    assert failing == {}
    # The notebook stopped its server; checkpoints on files still pass from the command line.
    offline = [cid for cid in run.results if not CHECKPOINTS[cid].needs_server]
    for cid in offline:
        cli = subprocess.run([str(VENV_BIN / "tritonlab"), "check", cid, "--workspace", str(tmp_path)],
                             capture_output=True, text=True)  # fmt: skip
        assert cli.returncode == 0, cli.stdout


@pytest.mark.parametrize("lab", LABS)
def test_released_lab_passes_no_checkpoint_and_fails_only_where_expected(lab, tmp_path):
    notebook = shutil.copy(REPO_ROOT / "labs" / f"{lab}.ipynb", tmp_path)
    run = run_notebook(notebook, tmp_path)
    passed = [cid for cid, r in run.results.items() if r.status == Status.PASS]
    assert passed == []
    assert all(r.status in (Status.FAIL, Status.UNATTEMPTED) for r in run.results.values())
    # Expected: the stubs' NotImplementedError, grade()'s AssertionError, and NameError for names the learner
    # has yet to define. Anything else is a bug in the lab.
    learner_names = solution_names(REPO_ROOT / "solutions" / f"{lab}.ipynb")
    unexpected = [
        (cell, ename, evalue) for cell, ename, evalue in run.errors
        if ename not in ("NotImplementedError", "AssertionError")
        and not (ename == "NameError" and evalue.split("'")[1:2] and evalue.split("'")[1] in learner_names)
    ]  # fmt: skip
    assert unexpected == []
    if run.results:
        assert run.errors, "a starter with checkpoints should fail somewhere"


DOCKER_LABS = ["01_setup", "02_repository"]


@pytest.mark.parametrize("lab", DOCKER_LABS)
def test_solution_passes_every_checkpoint_on_the_docker_backend(lab, tmp_path, cpu_image, no_leaked_containers,
                                                                monkeypatch):  # fmt: skip
    """A learner who picks docker (TRITONLAB_BACKEND=docker) gets the same verdicts from the same notebook."""
    from tritonlab.container import engine

    monkeypatch.setenv("TRITONLAB_BACKEND", "docker")
    notebook = shutil.copy(REPO_ROOT / "solutions" / f"{lab}.ipynb", tmp_path)
    started_at = int(time.time()) - 1
    run = run_notebook(notebook, tmp_path)
    assert run.errors == [], run.errors
    failing = {cid: (r.status, r.message) for cid, r in run.results.items() if r.status != Status.PASS}
    assert failing == {}
    assert run.results, "the notebook ran no checkpoint"
    # The servers the notebook started were containers (the engine saw them start), not embedded processes.
    client = engine.connect()
    events = client.events(since=started_at, until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "start", "label": engine.LABEL})  # fmt: skip
    assert [e for e in events if e["Actor"]["Attributes"].get(engine.LABEL_CACHE) == str(engine.cache_dir())]
