"""Per-workspace state: the values submitted to each checkpoint and the history of results (progress)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from tritonlab.checks.core import Result
from tritonlab.diskspace import atomic_write_text, clear_when_full

STATE_DIR = ".tritonlab"


def workspace_dir(workspace: str | Path | None = None) -> Path:
    """The learner's workspace: explicit, else $TRITONLAB_WORKSPACE, else the current directory (the notebook's)."""
    return Path(workspace or os.environ.get("TRITONLAB_WORKSPACE") or Path.cwd()).resolve()


def _state_file(workspace: Path, name: str) -> Path:
    return workspace / STATE_DIR / name


def _read(path: Path) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, OSError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def _write(path: Path, data: dict[str, Any]) -> None:
    with clear_when_full(path.parent, f"your checkpoint state ({path.name})"):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    atomic_write_text(path, json.dumps(data, indent=1), f"your checkpoint state ({path.name})", tmp=tmp)


def load_submissions(workspace: Path) -> dict[str, dict[str, Any]]:
    return _read(_state_file(workspace, "submissions.json"))


def save_submission(workspace: Path, checkpoint_id: str, encoded: dict[str, Any], replace: bool = False) -> None:
    """Record values for a checkpoint (merged with earlier ones, or replacing them all with ``replace``)."""
    path = _state_file(workspace, "submissions.json")
    data = _read(path)
    data[checkpoint_id] = dict(encoded) if replace else {**data.get(checkpoint_id, {}), **encoded}
    _write(path, data)


def load_progress(workspace: Path) -> dict[str, dict[str, Any]]:
    """{checkpoint id: last result as a dict}."""
    return _read(_state_file(workspace, "progress.json"))


def record_results(workspace: Path, results: list[Result]) -> None:
    path = _state_file(workspace, "progress.json")
    data = _read(path)
    for result in results:
        data[result.id] = result.as_dict()
    _write(path, data)
