"""One test per checkpoint: it passes exactly when the checkpoint's verdict is PASS."""

from __future__ import annotations

from tritonlab.checks.runner import evaluate


def test_checkpoint(checkpoint_id: str, grading_context: tuple) -> None:
    workspace, server = grading_context
    (result,) = evaluate([checkpoint_id], workspace, server, record=False)
    assert result.passed, f"{result.status}: {result.message}" + (f"\nhint: {result.hint}" if result.hint else "")
