"""Run a course notebook top to bottom in a real kernel, judging each autograded test cell out of the kernel.

Used by the course CI (solutions must PASS every checkpoint; released labs must never PASS one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbgrader import utils

from tritonlab.checks.core import Result
from tritonlab.grading.nbgrader import judge_cell


@dataclass
class NotebookRun:
    notebook: Any
    results: dict[str, Result] = field(default_factory=dict)  # checkpoint id -> out-of-kernel verdict
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (grade_id or cell index, ename, evalue)


def run_notebook(path: Path, workspace: Path, timeout: int = 300) -> NotebookRun:
    notebook = nbformat.read(path, as_version=4)
    run = NotebookRun(notebook)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workspace)}})  # fmt: skip

    async def judged(cell: Any, cell_index: int, execute_reply: Any) -> None:
        name = cell.metadata.get("nbgrader", {}).get("grade_id", str(cell_index))
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                run.errors.append((name, output.ename, output.evalue))
        for result in await judge_cell(client, cell, workspace):
            run.results[result.id] = result

    client.on_cell_executed = judged
    client.execute()
    return run


def solution_names(path: Path) -> set[str]:
    """Names assigned or defined in a notebook's solution cells (a starter raises NameError on these)."""
    import ast

    names: set[str] = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and utils.is_solution(cell):
            source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
                elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                    names.add(node.name)
    return names
