"""Time from ``Prometheus.start()`` to its first successful scrape of Triton (median of N), and start-to-ready.

    .venv/bin/python bench/prometheus_scrape.py [--runs 5] [--out bench/results/cpu_prometheus_scrape.json]

One embedded Triton (the shipped example) stays up; each run starts a fresh Prometheus (new temp storage, new
port) that scrapes it every second, and stops it. Prometheus 2.42 applies discovered targets at most every
5 s, so the first scrape comes about 5-6 s after start whatever the scrape interval.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_runs(runs: int) -> tuple[list[float], list[float]]:
    from tritonlab.monitor import Prometheus
    from tritonlab.server import start_server

    ready, first_scrape = [], []
    with start_server() as server:
        for _ in range(runs):
            prom = Prometheus(server)
            t0 = time.perf_counter()
            prom.start()
            ready.append(time.perf_counter() - t0)
            prom.wait_first_scrape(interval=0.02)
            first_scrape.append(time.perf_counter() - t0)
            prom.stop()
    return ready, first_scrape


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "n": len(values)}  # fmt: skip


def prometheus_version() -> str:
    from tritonlab.monitor import find_binary

    out = subprocess.run([find_binary("prometheus"), "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_prometheus_scrape.json")
    args = parser.parse_args()
    ready, first_scrape = time_runs(args.runs)
    results = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "prometheus": prometheus_version(),
        "scrape_interval_s": 1,
        "start_to_ready": summary(ready),
        "start_to_first_scrape": summary(first_scrape),
        "command": f"bench/prometheus_scrape.py --runs {args.runs}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
