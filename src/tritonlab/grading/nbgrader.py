"""nbgrader preprocessors and configuration.

``ExecuteWithCheckpoints`` is nbgrader's ``Execute`` plus one step: after each autograded test cell runs, the
checkpoints it names (``grade("lab1.server_ready")``) are judged again by a fresh, isolated Python outside the
learner's kernel, against the server that kernel started (found through the kernel's own child processes).
The cell's outputs are then replaced by that verdict, so nothing the learner's kernel prints, patches or
overrides (``check``, tritonlab modules, ``showtraceback``, stderr warnings) can change the grade.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute

from tritonlab.checks.core import Result
from tritonlab.checks.render import card_html, card_text
from tritonlab.checks.runner import run_isolated, server_of_process

GRADE_CALL = re.compile(r"""\bgrade\(\s*["']([\w.\-]+)["']""")


def checkpoint_ids(source: str) -> list[str]:
    """Checkpoint ids a test cell asks for, in order (hidden tests included)."""
    return list(dict.fromkeys(GRADE_CALL.findall(source)))


def verdict_outputs(results: list[Result]) -> list[NotebookNode]:
    """Outputs nbgrader scores as: all pass -> full credit; some -> partial (points as a float); none -> 0."""
    html = "".join(card_html(r) for r in results)
    text = "\n".join(card_text(r) for r in results)
    outputs = [NotebookNode(output_type="display_data", metadata={}, data={"text/html": html, "text/plain": text})]
    awarded = sum(r.awarded for r in results)
    if all(r.passed for r in results):
        return outputs
    if awarded > 0:
        outputs.append(NotebookNode(output_type="execute_result", execution_count=None, metadata={},
                                    data={"text/plain": repr(float(awarded))}))  # fmt: skip
        return outputs
    failed = [r for r in results if not r.passed]
    outputs.append(
        NotebookNode(
            output_type="error",
            ename="CheckpointFailed",
            evalue="; ".join(f"{r.id}: {r.status}" for r in failed),
            traceback=[f"CheckpointFailed: {r.id} {r.status}: {r.message}" for r in failed],
        )
    )
    return outputs


class ExecuteWithCheckpoints(Execute):
    """nbgrader's Execute, with autograded checkpoint cells re-judged outside the kernel."""

    def on_cell_executed(self, **kwargs: Any) -> None:
        super().on_cell_executed(**kwargs)
        cell = kwargs["cell"]
        if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
            return
        ids = checkpoint_ids(cell.source)
        if not ids:
            return
        kernel_pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        server = server_of_process(kernel_pid) if kernel_pid else None
        workspace = Path(self.resources.get("metadata", {}).get("path") or ".").resolve()
        results = run_isolated(ids, workspace, server)
        cell.outputs = verdict_outputs(results)
        self.log.info("checkpoints %s: %s", ", ".join(ids), ", ".join(f"{r.status}" for r in results))


def configure(c: Any, cell_timeout: int = 120) -> None:
    """Apply tritonlab's nbgrader settings to a traitlets config object ``c``."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearHiddenTests,
        GetGrades,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )  # fmt: skip

    c.Autograde.autograde_preprocessors = [
        ExecuteWithCheckpoints, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata,
    ]  # fmt: skip
    c.ExecuteWithCheckpoints.timeout = cell_timeout
    c.ExecuteWithCheckpoints.interrupt_on_timeout = True
    # Feedback goes to learners: no hidden test source in it.
    c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
