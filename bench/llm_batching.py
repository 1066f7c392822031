"""In-flight vs static batching on the same embedded engine (lab 5, Track B), plus the engine's build time.

    .venv/bin/python bench/llm_batching.py --out bench/results/cpu_llm_batching.json
    python3 bench/llm_batching.py --device cuda --dtype float16 --out bench/results/h200_llm_batching.json

``--device cuda`` builds the engine for this GPU and serves it from a KIND_GPU instance (KV cache in GPU memory); it
also records that the GPU engine is refused on the CPU (``load_engine(..., device="cpu")``). ``--engine-only`` adds the
same closed loop with the engine's Batcher in a fresh process and no Triton (what the serving path costs).

Workload: concurrency 16 closed-loop gRPC streams through the ensemble, ``--requests`` requests whose output lengths
are drawn log-uniformly from 16..256 tokens (seeded; many short answers, a few long ones, as in chat traffic),
``ignore_eos`` so every request produces exactly its length. Both strategies serve the same engine directory and
the same request list; repetitions alternate the strategies (in-flight, static, in-flight, ...) and the report
gives medians over repetitions. Build time: a cold build in an empty cache, then the same build again (cache hit).
Each run records ``mean_in_flight`` (Little's law: summed request latency / span): with 48 requests the closed loop
spends part of its span ramping down below the concurrency asked for (13.7 of 16 on average here); ``--requests 192``
measures nearer the steady state (15.3 of 16), as genai-perf's measurement windows do.
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
from typing import Any

LENGTHS = (16, 256)


def run_strategy(engine_dir: Path, work: Path, strategy: str, requests: list[tuple[str, int]], concurrency: int):
    from tritonlab.engine.serving import LLM, prepare_repository, read_step_log
    from tritonlab.engine.serving.client import llm_metrics, stream_load
    from tritonlab.server import start_server

    repo = prepare_repository(engine_dir, work / f"repo-{strategy}", batching_strategy=strategy)
    kind = "KIND_GPU" if "KIND_GPU" in (repo / LLM / "config.pbtxt").read_text() else "KIND_CPU"
    with start_server(repo) as server:
        stream_load(server.grpc_url, requests[:concurrency], concurrency=concurrency)  # warm-up, not measured
        records = stream_load(server.grpc_url, requests, concurrency=concurrency)
    metrics = llm_metrics(records)
    steps = [e for e in read_step_log(repo) if e["event"] == "step"]
    metrics["mean_running_per_step"] = statistics.fmean(len(e["ids"]) for e in steps) if steps else 0.0
    metrics["mean_computed_per_step"] = statistics.fmean(e["batch"] for e in steps) if steps else 0.0
    metrics["llm_instance_kind"] = kind
    return metrics


def engine_only(engine_dir: Path, strategy: str, requests: list[tuple[str, int]], concurrency: int) -> dict[str, Any]:
    """The same closed loop with the engine's Batcher in this process, no Triton: what the scheduling gains when no
    per-token serving path (python-backend response, ensemble, postprocessing, gRPC) sits between engine and client."""
    import threading

    from tokenizers import Tokenizer

    from tritonlab.engine.build import load_engine
    from tritonlab.engine.runtime import Batcher, Sequence
    from tritonlab.engine.serving.client import StreamRecord, llm_metrics

    tokenizer = Tokenizer.from_file(str(engine_dir / "tokenizer.json"))
    engine = load_engine(engine_dir, num_threads=1)

    def closed_loop(batch: list[tuple[str, int]]) -> tuple[list[StreamRecord], int]:
        batcher = Batcher(engine, strategy).start()
        todo = iter(enumerate(batch))
        records: list[StreamRecord] = []
        lock, finished = threading.Lock(), threading.Event()

        def submit_next() -> None:
            with lock:
                item = next(todo, None)
                if item is None:
                    if all(r.error is not None or len(r.token_times) == r.max_tokens for r in records):
                        finished.set()
                    return
                i, (prompt, n) = item
                record = StreamRecord(prompt, n, request_id=f"r{i}", sent=time.perf_counter())
                records.append(record)

            def emit(token: int, final: bool) -> None:
                record.token_times.append(time.perf_counter())
                if final:
                    submit_next()

            def fail(message: str) -> None:
                record.error = message
                submit_next()

            ids = tokenizer.encode(prompt).ids
            batcher.submit(Sequence(record.request_id, ids, n, emit, fail, stop_at_eos=False))

        for _ in range(concurrency):
            submit_next()
        finished.wait(timeout=600)
        batcher.stop()
        return records, batcher.steps

    closed_loop(requests[:concurrency])  # warm-up
    records, steps = closed_loop(requests)
    metrics = llm_metrics(records)
    metrics["decode_steps"] = steps
    metrics["ms_per_step"] = metrics["duration_s"] * 1e3 / max(steps, 1)
    return metrics


def refused_elsewhere(engine_dir: Path, device: str) -> dict[str, Any]:
    """Load the engine on the other device class: it must be refused with a clear error (GPU engine on the CPU; a
    CPU engine on the GPU where there is one)."""
    import torch

    from tritonlab.engine.build import load_engine
    from tritonlab.errors import TritonLabError

    other = "cpu" if device == "cuda" else "cuda"
    if other == "cuda" and not torch.cuda.is_available():
        return {"loaded_on": other, "error": None, "skipped": "no GPU here"}
    try:
        load_engine(engine_dir, device=other)
    except TritonLabError as exc:
        return {"loaded_on": other, "error": exc.message, "fix": exc.fix}
    raise SystemExit(f"the {device} engine loaded on {other}: check_device should have refused it")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str, stat: str | None = None) -> float:
        return statistics.median(r[key][stat] if stat else r[key] for r in runs)

    return {
        "output_token_throughput": med("output_token_throughput"),
        "request_throughput": med("request_throughput"),
        "time_to_first_token_ms": {"p50": med("time_to_first_token", "p50"), "p99": med("time_to_first_token", "p99")},
        "inter_token_latency_ms": {"p50": med("inter_token_latency", "p50"), "p99": med("inter_token_latency", "p99")},
        "request_latency_ms": {"p50": med("request_latency", "p50"), "p99": med("request_latency", "p99")},
        "mean_in_flight": med("mean_in_flight"),
        "mean_running_per_step": med("mean_running_per_step"),
        "mean_computed_per_step": med("mean_computed_per_step"),
        "failed": max(r["failed"] for r in runs),
        "llm_instance_kind": runs[0]["llm_instance_kind"],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default: bench/results/<cpu|cuda>_llm_batching.json")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="build and serve the engine here")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--distribution", choices=("loguniform", "uniform"), default="loguniform")
    parser.add_argument(
        "--engine-only", action="store_true", help="also measure both strategies in-process without Triton"
    )
    parser.add_argument("--_engine-only-run", dest="engine_only_run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_only_run:  # child process: a fresh process loads the engine, as a server would
        engine_dir, strategy, requests = json.loads(args.engine_only_run)
        result = engine_only(Path(engine_dir), strategy, [tuple(r) for r in requests], args.concurrency)
        print("ENGINE-ONLY " + json.dumps(result))
        return
    args.out = args.out or f"bench/results/{args.device}_llm_batching.json"

    import torch

    work = Path(tempfile.mkdtemp(prefix="tritonlab-llm-bench-"))
    os.environ["TRITONLAB_CACHE_DIR"] = str(work / "cache")  # an empty engine cache: the first build is cold
    # ... and empty compiler caches (Inductor's FX graph/kernel cache, Triton's kernel cache), else an earlier
    # build of the same graphs on this machine would make the "cold" build partly a cache hit.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor-cache")
    os.environ["TRITON_CACHE_DIR"] = str(work / "triton-cache")
    from tritonlab.engine.build import build_engine
    from tritonlab.engine.convert import convert_checkpoint
    from tritonlab.engine.model import make_llama

    checkpoint = convert_checkpoint(make_llama(work / "hf"), work / "ckpt", dtype=args.dtype)
    limits = {"max_batch_size": args.concurrency, "max_input_len": 64, "max_seq_len": 320}
    cold = build_engine(checkpoint, work / "engine", **limits, device=args.device, progress=False)
    hit = build_engine(checkpoint, work / "engine-again", **limits, device=args.device, progress=False)
    assert not cold.cache_hit and hit.cache_hit
    print(f"build ({args.device}): cold {cold.seconds:.1f} s, cache hit {hit.seconds * 1e3:.1f} ms, key {cold.key}")
    engine_device = json.loads((cold.engine_dir / "config.json").read_text())["device"]
    refusal = refused_elsewhere(cold.engine_dir, args.device)
    print(f"loading it on {refusal['loaded_on']}: {refusal.get('skipped') or refusal['error']}")  # else it exited

    from tritonlab.labs.lab5 import PROMPTS, mixed_requests

    requests = mixed_requests(args.requests, lengths=LENGTHS, seed=0, distribution=args.distribution)
    runs: dict[str, list[dict[str, Any]]] = {"inflight": [], "static": []}
    for rep in range(args.repetitions):
        for strategy in ("inflight", "static"):
            start = time.perf_counter()
            metrics = run_strategy(cold.engine_dir, work, strategy, requests, args.concurrency)
            runs[strategy].append(metrics)
            print(
                f"rep {rep + 1} {strategy:8s}: {metrics['output_token_throughput']:7.1f} tok/s, "
                f"TTFT p50 {metrics['time_to_first_token']['p50']:7.1f} ms, "
                f"ITL p50 {metrics['inter_token_latency']['p50']:6.1f} ms, "
                f"in flight {metrics['mean_in_flight']:4.1f} on average ({time.perf_counter() - start:.0f} s)"
            )
    in_process: dict[str, Any] = {}
    if args.engine_only:
        for strategy in ("inflight", "static"):
            payload = json.dumps([str(cold.engine_dir), strategy, requests])
            cmd = [sys.executable, __file__, "--concurrency", str(args.concurrency), "--_engine-only-run", payload]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = [x for x in out.stdout.splitlines() if x.startswith("ENGINE-ONLY ")]
            if not line:  # recorded, not fatal: the served figures above stand on their own
                print(f"engine-only run ({strategy}) failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
                in_process[strategy] = {"failed_exit_code": out.returncode, "stderr_tail": out.stderr[-1500:]}
                continue
            m = json.loads(line[-1].removeprefix("ENGINE-ONLY "))
            in_process[strategy] = {
                "output_token_throughput": m["output_token_throughput"],
                "time_to_first_token_ms": {k: m["time_to_first_token"][k] for k in ("p50", "p99")},
                "inter_token_latency_ms": {k: m["inter_token_latency"][k] for k in ("p50", "p99")},
                "ms_per_step": m["ms_per_step"],
                "mean_in_flight": m["mean_in_flight"],
                "decode_steps": m["decode_steps"],
                "failed": m["failed"],
            }
            print(
                f"engine only {strategy:8s}: {m['output_token_throughput']:7.1f} tok/s, "
                f"{m['ms_per_step']:.2f} ms/step, ITL p50 {m['inter_token_latency']['p50']:.2f} ms"
            )
        if all("output_token_throughput" in in_process[k] for k in ("inflight", "static")):
            in_process["ratio_inflight_over_static"] = (
                in_process["inflight"]["output_token_throughput"] / in_process["static"]["output_token_throughput"]
            )
    summary = {name: summarize(r) for name, r in runs.items()}
    ratios = [
        i["output_token_throughput"] / s["output_token_throughput"]
        for i, s in zip(runs["inflight"], runs["static"], strict=True)
    ]
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}
    if args.device == "cuda":
        machine.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    result = {
        "benchmark": "in-flight vs static batching, embedded engine (tritonlab.engine), one Triton per strategy",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python bench/llm_batching.py " + " ".join(sys.argv[1:]),
        "machine": machine,
        "device": args.device,
        "engine_device": engine_device,
        "refused_on_other_device": refusal,
        "workload": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "output_lengths": args.distribution,
            "length_range": LENGTHS,
            "mean_output_len": statistics.fmean(n for _, n in requests),
            "prompts": list(PROMPTS),
            "engine_limits": limits,
            "dtype": args.dtype,
            "repetitions": args.repetitions,
        },
        "build_seconds": {"cold": round(cold.seconds, 2), "cache_hit": round(hit.seconds, 4)},
        "throughput_ratio_inflight_over_static": {"median": statistics.median(ratios), "per_repetition": ratios},
        "inflight": summary["inflight"],
        "static": summary["static"],
        "engine_only_in_process": in_process or None,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"in-flight / static output tokens/s: median {statistics.median(ratios):.2f}x -> {args.out}")


if __name__ == "__main__":
    main()
