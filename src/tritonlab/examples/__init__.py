"""Model repositories shipped with tritonlab."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def example_repository() -> Path:
    """The example repository: ``add_sub``, a python-backend model with dynamic batching.

    INPUT0, INPUT1: FP32 [-1, 4] (batch of 4-vectors) -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1.
    """
    return _HERE / "model_repository"
