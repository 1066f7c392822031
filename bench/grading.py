"""Grading throughput: submissions per minute for the lab-1 notebook, serial vs parallel, side by side.

    .venv/bin/python bench/grading.py [--students 6] [--jobs 1 2] [--json]

Each submission is a correct lab-1 notebook graded the full instructor way (nbgrader autograde with its own
Triton server and out-of-kernel checks, then feedback). Reports throughput for each --jobs value and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "grading"))

from fake_class import solution_sources, submission  # noqa: E402


def make_class(folder: Path, students: int) -> None:
    import nbformat

    answers = solution_sources("01_setup")
    for i in range(students):
        (folder / f"student{i:02d}").mkdir(parents=True)
        nbformat.write(submission("01_setup", answers), folder / f"student{i:02d}" / "01_setup.ipynb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tritonlab.grading.course import grade_class

    results = {"machine": f"{os.cpu_count()} cores", "students": args.students, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        make_class(Path(tmp) / "subs", args.students)
        for jobs in args.jobs:
            started = time.monotonic()
            grades = grade_class(Path(tmp) / "subs", "01_setup", Path(tmp) / f"course-{jobs}", jobs=jobs)
            elapsed = time.monotonic() - started
            assert all(g.score == g.max_score for g in grades), [(g.student, g.score, g.reason) for g in grades]
            results["runs"].append({
                "jobs": jobs, "seconds": round(elapsed, 1),
                "submissions_per_minute": round(60 * len(grades) / elapsed, 2),
                "median_seconds_per_submission": round(statistics.median(g.seconds for g in grades), 1),
            })  # fmt: skip
    runs = results["runs"]
    if len(runs) > 1:
        base = runs[0]["submissions_per_minute"]
        results["speedup_vs_first"] = {r["jobs"]: round(r["submissions_per_minute"] / base, 2) for r in runs}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.students} correct lab-1 submissions on {results['machine']}")
    for r in runs:
        print(f"  jobs={r['jobs']}: {r['seconds']:.0f} s, {r['submissions_per_minute']:.1f} submissions/min "
              f"(median {r['median_seconds_per_submission']:.0f} s each)")  # fmt: skip
    if "speedup_vs_first" in results:
        print(f"  speed-up: {results['speedup_vs_first']}")


if __name__ == "__main__":
    main()
