"""Run a solution notebook's code cells in order, in one namespace, on a machine without Jupyter (the lent GPU box).

    python3 bench/device/notebook_cells.py solutions/05_trtllm_workflow.ipynb --workspace /tmp/ws --out $OUT/lab5.json

The cells run exactly as written (the same ``grade(...)`` calls: each checkpoint's verdict is recorded), with the
workspace as the current directory. Only IPython's display functions are replaced when IPython is not installed:
they print what they would show. Writes per-cell seconds, errors and every checkpoint result as JSON.
"""

from __future__ import annotations

import argparse
import json
import linecache
import os
import platform
import sys
import time
import traceback
import types
from datetime import UTC, datetime
from pathlib import Path


def _display_fallback() -> None:
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        ipython = types.ModuleType("IPython")
        # matplotlib probes a loaded IPython for these: say "no interactive shell, a recent IPython"
        ipython.get_ipython = lambda: None  # type: ignore[attr-defined]
        ipython.version_info = (8, 30, 0)  # type: ignore[attr-defined]
        display = types.ModuleType("IPython.display")
        display.display = lambda *objs, **_: [print(f"[display] {type(o).__name__}") for o in objs]  # type: ignore[attr-defined]
        display.Image = lambda path=None, **_: f"Image({path})"  # type: ignore[attr-defined]
        ipython.display = display  # type: ignore[attr-defined]
        sys.modules.update({"IPython": ipython, "IPython.display": display})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cells = json.loads(args.notebook.read_text())["cells"]
    args.workspace.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workspace)
    _display_fallback()
    from tritonlab.checks import grade
    from tritonlab.checks.core import Result

    results: list[dict] = []

    def recording_grade(checkpoint_id: str, **values: object) -> Result:
        try:
            result = grade(checkpoint_id, **values)
        except AssertionError as e:
            results.append({"id": checkpoint_id, "status": "FAIL", "message": str(e)})
            raise
        results.append({"id": result.id, "status": str(result.status), "message": result.message,
                        "seconds": result.seconds})  # fmt: skip
        return result

    namespace: dict = {"__name__": "__main__"}
    timings, errors = [], []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        cell_id = cell["metadata"].get("nbgrader", {}).get("grade_id", cell.get("id", "?"))
        source = "".join(cell["source"])
        filename = f"<cell {cell_id}>"
        # As IPython does: the cell's source in linecache, so inspect.getsource works for functions it defines
        # (grade() submits a function as its source).
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        start = time.perf_counter()
        try:
            exec(compile(source, filename, "exec"), namespace)
            namespace["grade"] = recording_grade  # after the setup cell imported the real one
        except Exception as e:  # a failing cell is a finding to report, the run goes on like nbclient's allow_errors
            errors.append(
                {"cell": cell_id, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
            )
        timings.append({"cell": cell_id, "seconds": round(time.perf_counter() - start, 2)})
        print(f"{cell_id:24} {timings[-1]['seconds']:7.2f} s", flush=True)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    machine = {"platform": platform.platform(), "torch": torch.__version__, "gpu": gpu}
    report = {
        "notebook": str(args.notebook),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "total_s": round(sum(t["seconds"] for t in timings), 1),
        "cells": timings,
        "errors": errors,
        "checkpoints": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("total_s", "errors", "checkpoints")}, indent=1))


if __name__ == "__main__":
    main()
