"""Time to green, the notebook part: each solution notebook run top to bottom as the course CI runs it, and the
whole course (labs 1-5) end to end, with a per-cell profile.

    .venv/bin/python bench/notebooks.py [--labs 01_setup ...] [--reps 1] [--out bench/results/cpu_notebooks.json]

Each notebook is copied into a fresh workspace and executed by ``tritonlab.grading.run.run_notebook`` (nbclient,
a real kernel, every autograded cell judged out of the kernel), exactly what tests/grading/test_course.py does.
The labs run one after another in one process, so the course total is the time a learner's machine needs to go
through all of them. Per cell: kernel time from nbclient's own timestamps (``iopub.status.busy`` ->
``iopub.status.idle``); the gap before the next cell is the out-of-kernel judging of that cell's checkpoints.
Target on a 2-core machine: the five solution notebooks <= 6 min together.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
# Lab n is the solution notebook whose name starts with 0n_ (lab 5's is being written: 05_trtllm_workflow.ipynb).
COURSE = {1: "01_setup", 2: "02_repository", 3: "03_pytorch_backend", 4: "04_monitoring", 5: "05_trtllm_workflow"}
TARGET_TOTAL_S = 360.0


def _when(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def cell_profile(notebook, started: float, finished: float) -> dict:
    """Kernel seconds per code cell, judging seconds after it, kernel start-up, from nbclient's timestamps."""
    cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        timing = cell.metadata.get("execution", {})
        busy, idle = _when(timing.get("iopub.status.busy")), _when(timing.get("iopub.status.idle"))
        if busy is None or idle is None:
            continue
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")[:70]
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cells.append({"index": index, "id": grade_id, "first_line": first_line, "busy": busy, "idle": idle})
    for this, after in zip(cells, [*cells[1:], None], strict=True):
        this["kernel_s"] = round(this["idle"] - this["busy"], 3)
        this["judge_s"] = round(max(0.0, (after["busy"] if after else finished) - this["idle"]), 3)
    startup = (cells[0]["busy"] - started) if cells else finished - started
    for cell in cells:
        del cell["busy"], cell["idle"]
    return {
        "kernel_startup_s": round(startup, 3),
        "kernel_s": round(sum(c["kernel_s"] for c in cells), 3),
        "judge_s": round(sum(c["judge_s"] for c in cells), 3),
        "cells": cells,
    }


def run_one(lab: str, reps_dir: Path) -> dict:
    from tritonlab.checks.core import Status
    from tritonlab.grading.run import run_notebook

    workspace = Path(tempfile.mkdtemp(prefix=f"{lab}-", dir=reps_dir))
    notebook = shutil.copy(SOLUTIONS / f"{lab}.ipynb", workspace)
    started = time.time()
    t0 = time.perf_counter()
    run = run_notebook(Path(notebook), workspace)
    seconds = time.perf_counter() - t0
    failing = {cid: f"{r.status}: {r.message}" for cid, r in run.results.items() if r.status != Status.PASS}
    return {
        "seconds": round(seconds, 2),
        "green": not run.errors and not failing,
        "errors": [list(e) for e in run.errors],
        "failing": failing,
        "checkpoints": len(run.results),
        "profile": cell_profile(run.notebook, started, started + seconds),
    }


def summary(values: list[float]) -> dict:
    return {"median_s": round(statistics.median(values), 2), "min_s": round(min(values), 2),
            "max_s": round(max(values), 2), "n": len(values)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", nargs="+", default=None, help="notebook names (default: every solution present)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_notebooks.json")
    args = parser.parse_args()

    present = sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))
    labs = args.labs or present
    missing = [name for name in labs if name not in present]
    if missing:
        sys.exit(f"no solution notebook for {missing} (present: {present})")
    by_prefix = {n: next((name for name in present if name.startswith(f"{n:02d}_")), None) for n in COURSE}
    course = {n: name for n, name in by_prefix.items() if name}
    absent = {n: f"solutions/{COURSE[n]}.ipynb (or any solutions/{n:02d}_*.ipynb) is absent"
              for n, name in by_prefix.items() if not name}  # fmt: skip

    runs: dict[str, list[dict]] = {lab: [] for lab in labs}
    totals: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tritonlab-nb-bench-") as tmp:
        for rep in range(args.reps):
            total = 0.0
            for lab in labs:
                result = run_one(lab, Path(tmp))
                runs[lab].append(result)
                if lab in course.values():
                    total += result["seconds"]
                slowest = sorted(result["profile"]["cells"], key=lambda c: -(c["kernel_s"] + c["judge_s"]))[:3]
                print(f"rep {rep + 1} {lab:<22} {result['seconds']:6.1f} s  green={result['green']}  slowest: "
                      + ", ".join(f"#{c['index']} {c['kernel_s'] + c['judge_s']:.1f}s" for c in slowest),
                      flush=True)  # fmt: skip
            totals.append(total)

    per_lab = {}
    for lab, results in runs.items():
        times = [r["seconds"] for r in results]
        # the profile of the median run (the run nearest the median time)
        median_run = min(results, key=lambda r: abs(r["seconds"] - statistics.median(times)))
        per_lab[lab] = {
            **summary(times),
            "green": all(r["green"] for r in results),
            "errors": [e for r in results for e in r["errors"]],
            "failing": {k: v for r in results for k, v in r["failing"].items()},
            "checkpoints": median_run["checkpoints"],
            "runs_s": times,
            "profile": median_run["profile"],
        }
    course_labs = [n for n, name in course.items() if name in labs]
    results = {
        "what": "solution notebooks run top to bottom (tritonlab.grading.run.run_notebook, as the course CI)",
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "reps": args.reps,
        "target_total_s": TARGET_TOTAL_S,
        "labs": {f"lab{n}": course[n] for n in course_labs},
        "absent": absent,
        "course_total": {
            **(summary(totals) if course_labs else {}),
            "labs_included": course_labs,
            "complete": len(course_labs) == len(COURSE),
        },
        "notebooks": per_lab,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    total = results["course_total"]
    if course_labs:
        print(f"course (labs {course_labs}) end to end: median {total['median_s']:.1f} s "
              f"[{'meets' if total['median_s'] <= TARGET_TOTAL_S else 'MISSES'} target <= {TARGET_TOTAL_S:.0f} s]"
              + ("" if total["complete"] else f"; NOT the whole course: {', '.join(absent.values())}"))  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
