"""nbgrader preprocessors and configuration.

``ExecuteWithCheckpoints`` is nbgrader's ``Execute`` plus one step: after each autograded test cell runs, the
checkpoints it names (``grade("lab1.server_ready")``) are judged again by a fresh, isolated Python outside the
learner's kernel, against the server that kernel started (found through the kernel's own child processes).
The cell's outputs are then replaced by that verdict, so nothing the learner's kernel prints, patches or
overrides (``check``, tritonlab modules, ``showtraceback``, stderr warnings) can change the grade.
"""

from __future__ import annotations

import ast
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute

from tritonlab.checks import store
from tritonlab.checks import values as values_module
from tritonlab.checks.core import Result
from tritonlab.checks.render import card_html, card_text
from tritonlab.checks.runner import run_isolated, server_of_process


@dataclass(frozen=True)
class GradeCall:
    checkpoint_id: str
    values: dict[str, str]  # keyword -> source of the expression the learner's kernel evaluates


def grade_calls(source: str) -> list[GradeCall]:
    """The ``grade("id", name=expr, ...)`` calls in a test cell, in order (hidden tests included)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name != "grade" or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        values = {
            kw.arg: ast.get_source_segment(source, kw.value) or ""
            for kw in node.keywords
            if kw.arg and kw.arg not in ("server", "workspace")
        }
        calls.append(GradeCall(str(node.args[0].value), values))
    return sorted(calls, key=lambda c: source.find(c.checkpoint_id))


def checkpoint_ids(source: str) -> list[str]:
    return list(dict.fromkeys(c.checkpoint_id for c in grade_calls(source)))


# The encoder travels as source and is executed in a fresh namespace inside the kernel: a learner who patched
# tritonlab.checks.values there cannot change how their values are read.
_ENCODER = (
    Path(values_module.__file__).read_text()
    + "\nimport json as _json\n_encode_json = lambda v: _json.dumps(encode(v))\n"
)


def _extraction_expression(expression: str) -> str:
    return f"(lambda __ns: (exec({_ENCODER!r}, __ns), __ns['_encode_json'](({expression}))))({{}})[1]"


async def kernel_values(client: Any, call: GradeCall) -> dict[str, Any]:
    """Evaluate the call's value expressions in the kernel; return {name: encoded value} for those that worked."""
    if not call.values:
        return {}
    expressions = {name: _extraction_expression(expr) for name, expr in call.values.items()}
    msg_id = client.kc.execute("pass", silent=True, store_history=False, user_expressions=expressions)
    reply = await client.async_wait_for_reply(msg_id)
    found = {}
    for name, outcome in (reply or {}).get("content", {}).get("user_expressions", {}).items():
        if outcome.get("status") == "ok":
            with contextlib.suppress(ValueError, SyntaxError, json.JSONDecodeError):
                found[name] = json.loads(ast.literal_eval(outcome["data"]["text/plain"]))
    return found


async def judge_cell(client: Any, cell: Any, workspace: Path) -> list[Result]:
    """Out-of-kernel verdicts for an autograded test cell (empty if it is not one or names no checkpoint)."""
    if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
        return []
    calls = grade_calls(cell.source)
    if not calls:
        return []
    for call in calls:
        if call.values:
            # Only what the locked cell's own expressions evaluate to counts, whatever the kernel wrote before.
            store.save_submission(workspace, call.checkpoint_id, await kernel_values(client, call), replace=True)
    kernel_pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
    server = server_of_process(kernel_pid) if kernel_pid else None
    return run_isolated(list(dict.fromkeys(c.checkpoint_id for c in calls)), workspace, server)


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

    async def on_cell_executed(self, **kwargs: Any) -> None:
        super().on_cell_executed(**kwargs)
        cell = kwargs["cell"]
        workspace = Path(self.resources.get("metadata", {}).get("path") or ".").resolve()
        results = await judge_cell(self, cell, workspace)
        if results:
            cell.outputs = verdict_outputs(results)
            self.log.info("checkpoints: %s", ", ".join(f"{r.id} {r.status}" for r in results))


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
