"""Grading throughput: submissions per minute for a class of one lab, serial vs parallel, side by side.

    .venv/bin/python bench/grading.py [--lab 01_setup] [--students 6] [--jobs 1 2] [--json] [--out FILE]

Each submission is the released notebook answered with the solution's code, graded the full instructor way
(nbgrader autograde with its own Triton server and out-of-kernel checks, then feedback). Reports throughput for
each --jobs value and the ratio. The course figure (bench/run_all.py): a class of 20 lab-2 submissions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "grading"))

from fake_class import solution_sources, submission  # noqa: E402


def make_class(folder: Path, students: int, lab: str = "01_setup") -> None:
    import nbformat

    answers = solution_sources(lab)
    for i in range(students):
        (folder / f"student{i:02d}").mkdir(parents=True)
        nbformat.write(submission(lab, answers), folder / f"student{i:02d}" / f"{lab}.ipynb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="01_setup")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from tritonlab.grading.course import grade_class

    results = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "lab": args.lab,
        "students": args.students,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        make_class(Path(tmp) / "subs", args.students, args.lab)
        for jobs in args.jobs:
            started = time.monotonic()
            grades = grade_class(Path(tmp) / "subs", args.lab, Path(tmp) / f"course-{jobs}", jobs=jobs)
            elapsed = time.monotonic() - started
            assert all(g.score == g.max_score for g in grades), [(g.student, g.score, g.reason) for g in grades]
            results["runs"].append({
                "jobs": jobs, "seconds": round(elapsed, 1),
                "submissions_per_minute": round(60 * len(grades) / elapsed, 2),
                "median_seconds_per_submission": round(statistics.median(g.seconds for g in grades), 1),
                "seconds_per_submission": [round(g.seconds, 1) for g in grades],
            })  # fmt: skip
    runs = results["runs"]
    if len(runs) > 1:
        base = runs[0]["submissions_per_minute"]
        results["speedup_vs_first"] = {r["jobs"]: round(r["submissions_per_minute"] / base, 2) for r in runs}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.students} correct {args.lab} submissions on {results['machine']}")
    for r in runs:
        print(f"  jobs={r['jobs']}: {r['seconds']:.0f} s, {r['submissions_per_minute']:.1f} submissions/min "
              f"(median {r['median_seconds_per_submission']:.0f} s each)")  # fmt: skip
    if "speedup_vs_first" in results:
        print(f"  speed-up: {results['speedup_vs_first']}")


if __name__ == "__main__":
    main()
