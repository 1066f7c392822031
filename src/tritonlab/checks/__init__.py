"""Checkpoints: ``check()`` in notebooks, ``tritonlab check`` and graders/ for self-learners, ``grade()`` in
nbgrader test cells. One definition of each checkpoint serves all of them.

    from tritonlab.checks import check, check_all
    check("lab1.http_inference", output0=out0, output1=out1)   # submit values, then verify against the server
    check_all("lab1")

Every verdict is computed in a separate, isolated Python process (see ``runner``): what runs in the notebook
only submits values and shows the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonlab.checks import store
from tritonlab.checks.core import CHECKPOINTS, Checkpoint, Context, Fail, Result, ServerInfo, Status, Unattempted
from tritonlab.checks.core import checkpoint as checkpoint
from tritonlab.checks.render import ResultTable
from tritonlab.checks.runner import run_isolated, state_problem
from tritonlab.checks.values import encode
from tritonlab.errors import TritonLabError

__all__ = [
    "CHECKPOINTS", "Checkpoint", "Context", "Fail", "Result", "ServerInfo", "Status", "Unattempted",
    "check", "check_all", "grade", "submit",
]  # fmt: skip


def _server_info(server: Any) -> ServerInfo | None:
    if server is None:
        from tritonlab.server.base import current_server

        server = current_server()
        if server is None:
            return None
    if isinstance(server, str):
        return ServerInfo(server)
    return ServerInfo(server.http_url, server.grpc_url, server.metrics_url)


def _explain_crash(results: list[Result], server: Any) -> list[Result]:
    """Without a running server, checkpoints say none was found; if the one this notebook started died, say that."""
    from tritonlab.server.base import crashed_server

    crashed = crashed_server() if server is None else None
    crash = crashed.crash() if crashed is not None else None
    if crash is not None:
        for result in results:
            if result.status == Status.FAIL and result.message.startswith("no running Triton server was found"):
                result.message, result.hint = crash.message, crash.fix or result.hint
    return results


def submit(checkpoint_id: str, workspace: str | Path | None = None, **values: Any) -> None:
    """Record values for a checkpoint in the workspace (``check`` does this for you)."""
    if values:
        store.save_submission(store.workspace_dir(workspace), checkpoint_id, {k: encode(v) for k, v in values.items()})


def check(checkpoint_id: str, *, server: Any = None, workspace: str | Path | None = None, **values: Any) -> Result:
    """Submit ``values`` (if any) and verify the checkpoint against real state. Shows a pass/fail card."""
    try:
        submit(checkpoint_id, workspace, **values)
    except TritonLabError as e:  # the workspace cannot take the values (permissions, not a folder): say so, and how
        try:
            return state_problem([checkpoint_id], e)[0]
        except KeyError as unknown:
            raise TritonLabError(unknown.args[0], fix="`tritonlab progress` lists every checkpoint") from None
    results = run_isolated([checkpoint_id], store.workspace_dir(workspace), _server_info(server))
    return _explain_crash(results, server)[0]


def check_all(lab: str, *, server: Any = None, workspace: str | Path | None = None) -> ResultTable:
    """Every checkpoint of ``lab`` as a table."""
    results = _explain_crash(run_isolated([lab], store.workspace_dir(workspace), _server_info(server)), server)
    return ResultTable(results, f"{lab}: {sum(r.passed for r in results)}/{len(results)} checkpoints pass")


def grade(checkpoint_id: str, *, server: Any = None, workspace: str | Path | None = None, **values: Any) -> Result:
    """For autograded test cells: like ``check``, and raises AssertionError unless the checkpoint passes.

    (The grader does not trust this cell's outcome: it re-runs the checkpoint outside the kernel.)
    """
    result = check(checkpoint_id, server=server, workspace=workspace, **values)
    if not result.passed:
        raise AssertionError(f"{result.status}: {result.id}: {result.message}")
    return result
