"""Per-workspace state: the values submitted to each checkpoint and the history of results (progress)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tritonlab.checks.core import Result
from tritonlab.diskspace import atomic_write_text, clear_when_full
from tritonlab.errors import TritonLabError

STATE_DIR = ".tritonlab"
MAX_STATE_BYTES = 64 * 2**20  # submitted arrays and functions take KBs to a few MB


class StateError(TritonLabError):
    """The workspace or a state file in it cannot be used (unreadable, damaged, not a folder): nothing was changed."""


def workspace_dir(workspace: str | Path | None = None) -> Path:
    """The learner's workspace: explicit, else $TRITONLAB_WORKSPACE, else the current directory (the notebook's)."""
    path = Path(workspace or os.environ.get("TRITONLAB_WORKSPACE") or Path.cwd())
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError) as e:  # Python 3.11 raises RuntimeError for a symbolic link loop
        raise StateError(
            f"the workspace {path} cannot be resolved ({e})",
            fix="pass a real folder as the workspace (a symbolic link loop leads nowhere)",
        ) from None
    if resolved.exists() and not resolved.is_dir():
        raise StateError(f"the workspace {path} is a file, not a folder",
                         fix="pass the folder the lab runs in (the notebook's folder)")  # fmt: skip
    return resolved


def _state_file(workspace: Path, name: str) -> Path:
    return workspace / STATE_DIR / name


def _read(path: Path, keep_damaged: bool = False) -> dict[str, Any]:
    """The state file's object; {} if there is none yet or it is damaged or unreadable (checks go on without it).
    With ``keep_damaged`` (before a write replaces it) such a file is first renamed aside, never lost."""
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise ValueError(f"{path.stat().st_size / 2**20:.0f} MiB, far more than tritonlab ever writes")
        data = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("not an object of {checkpoint id: {...}}")
        return data
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:  # permissions, a folder, a loop; JSON, UTF-8 and shape errors
        if keep_damaged:
            _set_aside(path, e)
        return {}


SET_ASIDE: list[tuple[Path, Path, str]] = []  # (state file, where its damaged content now is, why): CLI reports them


def _set_aside(path: Path, error: BaseException) -> None:
    if isinstance(error, json.JSONDecodeError):
        why = f"not JSON: line {error.lineno}, column {error.colno}: {error.msg}"
    else:
        why = getattr(error, "strerror", None) or str(error)
    backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    with _writing(path):
        os.replace(path, backup)
    SET_ASIDE.append((path, backup, why[:200]))


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError while writing state (not a full disk: that says so itself) as a StateError naming the file."""
    try:
        yield
    except OSError as e:
        raise StateError(f"cannot write {path}: {e.strerror}", fix="run where you may write (the workspace "
                         f"{path.parent.parent} must be yours), or fix its permissions") from None  # fmt: skip


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
    data = _read(path, keep_damaged=True)
    data[checkpoint_id] = dict(encoded) if replace else {**data.get(checkpoint_id, {}), **encoded}
    with _writing(path):
        _write(path, data)


def load_progress(workspace: Path) -> dict[str, dict[str, Any]]:
    """{checkpoint id: last result as a dict}."""
    return _read(_state_file(workspace, "progress.json"))


def record_results(workspace: Path, results: list[Result]) -> None:
    path = _state_file(workspace, "progress.json")
    data = _read(path, keep_damaged=True)
    for result in results:
        data[result.id] = result.as_dict()
    with _writing(path):
        _write(path, data)
