"""The builtin load generator against perf_analyzer: same server, model, inputs and protocol, side by side.

    .venv/bin/python bench/loadgen_vs_perf_analyzer.py [--model add_sub] [--repository REPO]
        [--concurrency 1 8 32] [--reps 3] [--duration 5] [--protocol grpc] [--shape NAME:d1,d2] [--json]

Starts an embedded server on the repository (default: the shipped example), then for each concurrency runs
perf_analyzer and the builtin generator alternately (the order flips every repetition, so neither always
gets the warmer machine), ``--reps`` times each, and compares medians. perf_analyzer measures windows of
``--duration``/3 s with stability checks off (-s 999, 3 trials: about ``--duration`` s of load in all), the
builtin one ``--duration`` s window after 0.5 s of warm-up. Target: builtin / perf_analyzer >= 0.9.
Besides the ratio of medians it reports the median of per-repetition ratios (each builtin run against the
perf_analyzer run next to it) and each tool's client CPU per request, which say more on a machine whose
speed drifts (on the shared 2-core VM, perf_analyzer alone varied 385-750 infer/s at concurrency 1 within
minutes: use more --reps there). Writes bench/results/cpu_loadgen_vs_perf_analyzer.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.9


def parse_shapes(values: list[str]) -> dict[str, list[int]]:
    shapes = {}
    for value in values:
        name, _, dims = value.partition(":")
        shapes[name] = [int(d) for d in dims.split(",") if d]
    return shapes


def summarise(runs: list[tuple]) -> dict:
    rows = [row for row, _ in runs]
    return {
        "throughput_median": round(statistics.median(r.throughput for r in rows), 1),
        "p50_ms_median": round(statistics.median(r.p50_ms for r in rows), 3),
        "p99_ms_median": round(statistics.median(r.p99_ms for r in rows), 3),
        "client_cpu_us_per_request_median": round(statistics.median(cpu for _, cpu in runs), 1),
        "runs": [{"throughput": round(r.throughput, 1), "p50_ms": round(r.p50_ms, 3), "p99_ms": round(r.p99_ms, 3),
                  "requests": r.requests, "server_requests": r.server_requests,
                  "server_avg_batch": r.server_avg_batch and round(r.server_avg_batch, 2),
                  "client_cpu_us_per_request": round(cpu, 1)} for r, cpu in runs],
    }  # fmt: skip


def client_cpu(measure, reader) -> tuple:
    """(row, client CPU µs per request): this process's CPU plus perf_analyzer's (a child), over all the
    requests the server completed meanwhile (warm-up and stabilisation windows included, for both tools)."""
    before, children = reader()["success_count"], resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time()
    row = measure()
    cpu = time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += after.ru_utime - children.ru_utime + after.ru_stime - children.ru_stime
    return row, 1e6 * cpu / max(1, reader()["success_count"] - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="add_sub")
    parser.add_argument("--repository", type=Path, default=None, help="default: the shipped example repository")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of measured load per run")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--shape", action="append", default=[], help="NAME:d1,d2 for inputs with -1 dims")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_loadgen_vs_perf_analyzer.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tritonlab.bench.loadgen import prefer_classic_grpc_client

    classic_grpc = prefer_classic_grpc_client()  # what run_bench does too; recorded below
    import grpc

    from tritonlab.bench.inputs import InputSet
    from tritonlab.bench.loadgen import run_loadgen
    from tritonlab.bench.perf_analyzer import find_perf_analyzer, run_perf_analyzer
    from tritonlab.bench.stats import model_stats_reader
    from tritonlab.server import start_server

    find_perf_analyzer()
    per_concurrency = {}
    with tempfile.TemporaryDirectory() as tmp, start_server(args.repository) as server:
        inputs = InputSet.from_model(server, args.model, shapes=parse_shapes(args.shape))
        input_data = inputs.write_perf_analyzer_json(Path(tmp) / "inputs.json")  # identical values for both
        reader = model_stats_reader(server.http_url, args.model)
        url = server.grpc_address if args.protocol == "grpc" else server.http_url

        def perf_analyzer(concurrency: int):
            return run_perf_analyzer(
                url, args.model, protocol=args.protocol, concurrency=[concurrency], input_data=input_data,
                measurement_interval_ms=int(args.duration * 1000 / 3), stability_percentage=999, max_trials=3,
                stats_reader=reader,
            )[0]  # fmt: skip

        def builtin(concurrency: int):
            return run_loadgen(
                url, args.model, inputs, protocol=args.protocol, concurrency=concurrency, duration_s=args.duration,
                warmup_s=0.5, stats_reader=reader, progress=False,
            )  # fmt: skip

        started = time.monotonic()
        for concurrency in args.concurrency:
            runs: dict[str, list] = {"perf_analyzer": [], "builtin": []}
            for rep in range(args.reps):
                order = ["perf_analyzer", "builtin"] if rep % 2 == 0 else ["builtin", "perf_analyzer"]
                for tool in order:
                    measure = perf_analyzer if tool == "perf_analyzer" else builtin
                    row, cpu = client_cpu(lambda: measure(concurrency), reader)  # noqa: B023
                    runs[tool].append((row, cpu))
                    if not args.json:
                        print(f"  c={concurrency:<3} rep {rep + 1} {tool:<14} {row.throughput:8.1f} infer/s  "
                              f"p50 {row.p50_ms:6.2f} ms  p99 {row.p99_ms:6.2f} ms  client CPU {cpu:5.0f} us/req",
                              file=sys.stderr, flush=True)  # fmt: skip
            # Each builtin run against the perf_analyzer run next to it: robust to a machine that drifts.
            pairs = zip(runs["perf_analyzer"], runs["builtin"], strict=True)
            paired = [ours.throughput / theirs.throughput for (theirs, _), (ours, _) in pairs]
            pa, builtin_summary = summarise(runs["perf_analyzer"]), summarise(runs["builtin"])
            per_concurrency[str(concurrency)] = {
                "perf_analyzer": pa,
                "builtin": builtin_summary,
                "ratio_throughput": round(builtin_summary["throughput_median"] / pa["throughput_median"], 3),
                "ratio_paired_median": round(statistics.median(paired), 3),
            }
        elapsed = time.monotonic() - started

    results = {
        "what": "builtin load generator vs perf_analyzer 2.51.0, interleaved, medians of repetitions",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "model": args.model,
        "repository": str(args.repository or "shipped example"),
        "protocol": args.protocol,
        "grpcio": f"{grpc.__version__} ({'classic' if classic_grpc else 'default'} TCP client)",
        "inputs": inputs.describe(),
        "duration_s": args.duration,
        "reps": args.reps,
        "elapsed_s": round(elapsed, 1),
        "target_ratio": TARGET_RATIO,
        "concurrency": per_concurrency,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['machine']}; model {args.model} over {args.protocol}; inputs {results['inputs']}")
    print("medians (infer/s, ms, client CPU µs per request); ratio = builtin / perf_analyzer, paired = median of")
    print("the per-repetition ratios")
    print(f"{'conc':>4}  {'PA infer/s':>10}  {'builtin':>8}  {'ratio':>5}  {'paired':>6}  {'PA p99':>7}  "
          f"{'our p99':>7}  {'PA cpu':>6}  {'our cpu':>7}")  # fmt: skip
    for concurrency, entry in per_concurrency.items():
        pa, ours, ratio = entry["perf_analyzer"], entry["builtin"], entry["ratio_throughput"]
        verdict = "ok" if min(ratio, entry["ratio_paired_median"]) >= TARGET_RATIO else f"BELOW {TARGET_RATIO}"
        print(f"{concurrency:>4}  {pa['throughput_median']:>10.1f}  {ours['throughput_median']:>8.1f}  {ratio:>5.2f}  "
              f"{entry['ratio_paired_median']:>6.2f}  {pa['p99_ms_median']:>7.2f}  {ours['p99_ms_median']:>7.2f}  "
              f"{pa['client_cpu_us_per_request_median']:>6.0f}  {ours['client_cpu_us_per_request_median']:>7.0f}  "
              f"{verdict}")  # fmt: skip
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
