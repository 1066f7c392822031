"""In-flight vs static batching on the same embedded engine (lab 5, Track B), plus the engine's build time.

    .venv/bin/python bench/llm_batching.py --out bench/results/cpu_llm_batching.json

Workload: concurrency 16 closed-loop gRPC streams through the ensemble, ``--requests`` requests whose output lengths
are drawn log-uniformly from 16..256 tokens (seeded; many short answers, a few long ones, as in chat traffic),
``ignore_eos`` so every request produces exactly its length. Both strategies serve the same engine directory and
the same request list; repetitions alternate the strategies (in-flight, static, in-flight, ...) and the report
gives medians over repetitions. Build time: a cold build in an empty cache, then the same build again (cache hit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

LENGTHS = (16, 256)


def output_lengths(n: int, seed: int, distribution: str) -> list[int]:
    rng = random.Random(seed)
    lo, hi = LENGTHS
    if distribution == "uniform":
        return [rng.randint(lo, hi) for _ in range(n)]
    return [round(math.exp(rng.uniform(math.log(lo), math.log(hi)))) for _ in range(n)]


def run_strategy(engine_dir: Path, work: Path, strategy: str, requests: list[tuple[str, int]], concurrency: int):
    from tritonlab.engine.serving import prepare_repository, read_step_log
    from tritonlab.engine.serving.client import llm_metrics, stream_load
    from tritonlab.server import start_server

    repo = prepare_repository(engine_dir, work / f"repo-{strategy}", batching_strategy=strategy)
    with start_server(repo) as server:
        stream_load(server.grpc_url, requests[:concurrency], concurrency=concurrency)  # warm-up, not measured
        records = stream_load(server.grpc_url, requests, concurrency=concurrency)
    metrics = llm_metrics(records)
    steps = [e for e in read_step_log(repo) if e["event"] == "step"]
    metrics["mean_running_per_step"] = statistics.fmean(len(e["ids"]) for e in steps) if steps else 0.0
    metrics["mean_computed_per_step"] = statistics.fmean(e["batch"] for e in steps) if steps else 0.0
    return metrics


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str, stat: str | None = None) -> float:
        return statistics.median(r[key][stat] if stat else r[key] for r in runs)

    return {
        "output_token_throughput": med("output_token_throughput"),
        "request_throughput": med("request_throughput"),
        "time_to_first_token_ms": {"p50": med("time_to_first_token", "p50"), "p99": med("time_to_first_token", "p99")},
        "inter_token_latency_ms": {"p50": med("inter_token_latency", "p50"), "p99": med("inter_token_latency", "p99")},
        "request_latency_ms": {"p50": med("request_latency", "p50"), "p99": med("request_latency", "p99")},
        "mean_running_per_step": med("mean_running_per_step"),
        "mean_computed_per_step": med("mean_computed_per_step"),
        "failed": max(r["failed"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/cpu_llm_batching.json")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--distribution", choices=("loguniform", "uniform"), default="loguniform")
    args = parser.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="tritonlab-llm-bench-"))
    os.environ["TRITONLAB_CACHE_DIR"] = str(work / "cache")  # an empty engine cache: the first build is cold
    from tritonlab.engine.build import build_engine
    from tritonlab.engine.convert import convert_checkpoint
    from tritonlab.engine.model import make_llama

    checkpoint = convert_checkpoint(make_llama(work / "hf"), work / "ckpt", dtype="float32")
    limits = {"max_batch_size": args.concurrency, "max_input_len": 64, "max_seq_len": 320}
    cold = build_engine(checkpoint, work / "engine", **limits, progress=False)
    hit = build_engine(checkpoint, work / "engine-again", **limits, progress=False)
    assert not cold.cache_hit and hit.cache_hit
    print(f"build: cold {cold.seconds:.1f} s, cache hit {hit.seconds * 1e3:.1f} ms")

    prompts = ["once upon a time", "the server loads a model", "tell me about the key and value cache"]
    lengths = output_lengths(args.requests, seed=0, distribution=args.distribution)
    requests = [(prompts[i % len(prompts)], n) for i, n in enumerate(lengths)]
    runs: dict[str, list[dict[str, Any]]] = {"inflight": [], "static": []}
    for rep in range(args.repetitions):
        for strategy in ("inflight", "static"):
            start = time.perf_counter()
            metrics = run_strategy(cold.engine_dir, work, strategy, requests, args.concurrency)
            runs[strategy].append(metrics)
            print(
                f"rep {rep + 1} {strategy:8s}: {metrics['output_token_throughput']:7.1f} tok/s, "
                f"TTFT p50 {metrics['time_to_first_token']['p50']:7.1f} ms, "
                f"ITL p50 {metrics['inter_token_latency']['p50']:6.1f} ms ({time.perf_counter() - start:.0f} s)"
            )
    summary = {name: summarize(r) for name, r in runs.items()}
    ratios = [
        i["output_token_throughput"] / s["output_token_throughput"]
        for i, s in zip(runs["inflight"], runs["static"], strict=True)
    ]
    result = {
        "benchmark": "in-flight vs static batching, embedded engine (tritonlab.engine), one Triton per strategy",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "workload": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "output_lengths": args.distribution,
            "length_range": LENGTHS,
            "mean_output_len": statistics.fmean(lengths),
            "prompts": prompts,
            "engine_limits": limits,
            "dtype": "float32",
            "repetitions": args.repetitions,
        },
        "build_seconds": {"cold": round(cold.seconds, 2), "cache_hit": round(hit.seconds, 4)},
        "throughput_ratio_inflight_over_static": {"median": statistics.median(ratios), "per_repetition": ratios},
        "inflight": summary["inflight"],
        "static": summary["static"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"in-flight / static output tokens/s: median {statistics.median(ratios):.2f}x -> {args.out}")


if __name__ == "__main__":
    main()
