"""Embedded server start-up and setup re-run times (medians), measured side by side in one run.

    .venv/bin/python bench/server_startup.py [--starts 10] [--setup-runs 5] [--json] [--out FILE]

Targets on a 2-core machine: start-to-ready median <= 3 s; `env/setup.sh` on a set-up checkout <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_starts(count: int, **options: object) -> tuple[list[float], list[float]]:
    from tritonlab.server import create_server

    ready, stop = [], []
    for _ in range(count):
        server = create_server(**options)
        t0 = time.perf_counter()
        server.start()
        ready.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        server.stop()
        stop.append(time.perf_counter() - t0)
    return ready, stop


def time_cold_stage() -> float:
    from tritonlab.server.staging import stage

    t0 = time.perf_counter()
    stage()
    return time.perf_counter() - t0


def time_setup(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["bash", "env/setup.sh"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "n": len(values)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--setup-runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITONLAB_CACHE_DIR"] = cache  # cold staging, then every start from that cache
        cold_stage = time_cold_stage()
        ready, stop = time_starts(args.starts)
        ready_explicit, _ = time_starts(args.starts, model_control_mode="explicit")
    setup = time_setup(args.setup_runs) if args.setup_runs else []

    results = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "cold_stage_s": round(cold_stage, 3),
        "start_to_ready_example_repo": summary(ready),
        "start_to_ready_explicit_no_models": summary(ready_explicit),
        "stop": summary(stop),
    }
    if setup:
        results["setup_rerun"] = summary(setup)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['machine']}")
    print(f"cold staging of the wheel's server:        {cold_stage:.2f} s (once per cache)")
    for key, label, target in [
        ("start_to_ready_example_repo", "start -> ready, example repo (add_sub)", 3.0),
        ("start_to_ready_explicit_no_models", "start -> ready, explicit mode, no models", 3.0),
        ("stop", "stop (graceful, python stub exits)", None),
        ("setup_rerun", "env/setup.sh on a set-up checkout", 5.0),
    ]:
        if key not in results:
            continue
        s = results[key]
        verdict = ""
        if target is not None:
            verdict = f"  [{'meets' if s['median_s'] <= target else 'MISSES'} target <= {target:.0f} s]"
        print(
            f"{label:<44} median {s['median_s']:.2f} s (min {s['min_s']:.2f}, max {s['max_s']:.2f}, n={s['n']})"
            f"{verdict}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
