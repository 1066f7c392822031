"""Lab 3's model served by Triton: what dynamic batching buys, against what, and at what serving overhead.

    python bench/lab3_serving.py [--device cpu|cuda] [--concurrency N] [--seconds S] [--reps R] [--out FILE]

One run, side by side, with the same builtin load generator (binary tensors):
1. dynamic batching gain: classifier without and with dynamic batching at one concurrency (gRPC), interleaved
   repetitions, median throughputs and their ratio;
2. Triton + dynamic batching vs the plain transformers pipeline (NaiveServer): the text_classifier ensemble and
   the naive server, same HTTP client, same concurrency, same texts;
3. serving efficiency: Triton's best throughput with requests of batch B, as a fraction of the same model.pt's
   in-process throughput at batch B (same device, same precision).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tritonlab.bench import run_bench
from tritonlab.checks.core import ServerInfo
from tritonlab.checks.runner import evaluate
from tritonlab.labs import lab3
from tritonlab.labs.naive_server import NaiveServer
from tritonlab.server import start_server

NO_BATCHING = lab3.Variant("no batching")
BATCHING = lab3.Variant("dynamic batching", max_queue_delay_us=0)


def measure(server, model, reps: int, **kwargs) -> dict[str, float]:
    rows = [run_bench(server, model, tool="builtin", progress=False, **kwargs).rows[0] for _ in range(reps)]
    return summarise(rows)


def summarise(rows) -> dict[str, float]:
    return {
        "throughput": statistics.median(r.throughput for r in rows),
        "p50_ms": statistics.median(r.p50_ms for r in rows),
        "p99_ms": statistics.median(r.p99_ms for r in rows),
        "server_avg_batch": statistics.median(r.server_avg_batch or 1.0 for r in rows),
        "reps": len(rows),
        "throughputs": [round(r.throughput, 1) for r in rows],
    }


def in_process(model_pt: Path, clf: lab3.TextClassifier, batch: int, device: str, seconds: float) -> float:
    """Samples/s of model.pt called directly at ``batch`` (fp16 on CUDA, fp32 on the CPU), median of 3 windows."""
    precision = "fp16" if device == "cuda" else "fp32"
    module = (
        torch.jit.load(str(model_pt), map_location=device)
        .eval()
        .to(torch.float16 if precision == "fp16" else torch.float32)
    )
    encoded = clf.encode((lab3.SAMPLE_TEXTS * (batch // len(lab3.SAMPLE_TEXTS) + 1))[:batch])
    ids = torch.from_numpy(encoded["input_ids"]).to(device)
    mask = torch.from_numpy(encoded["attention_mask"]).to(device)

    def run(n: int) -> None:
        with torch.no_grad():
            for _ in range(n):
                module(ids, mask).float().cpu()  # same work as the served model: the answer comes back to the host

    run(10)
    rates = []
    for _ in range(3):
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            run(5)
            n += 5
        rates.append(n * batch / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--concurrency", type=int, default=None, help="default 16 on the CPU, 64 on a GPU")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="client batch for the serving-efficiency figure")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-naive", action="store_true", help="skip 2. (the naive baseline)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured window")
    parser.add_argument("--efficiency-concurrency", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--efficiency-instances", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    kind = "gpu" if args.device == "cuda" else "cpu"
    concurrency = args.concurrency or (64 if kind == "gpu" else 16)
    common = {"duration_s": args.seconds, "warmup_s": args.warmup}
    results: dict[str, object] = {
        "machine": platform.node(),
        "device": torch.cuda.get_device_name(0) if kind == "gpu" else f"CPU ({torch.get_num_threads()} threads)",
        "model": "lab 3 classifier (BERT 2x128, seq 32), python backend running model.pt",
        "seconds": args.seconds,
        "reps": args.reps,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    clf = lab3.build_classifier()
    with tempfile.TemporaryDirectory() as tmp:
        repo = lab3.prepare_repository(Path(tmp) / "lab3_repo", clf, kind=kind)
        model_pt = lab3.export_torchscript(clf, repo / "classifier" / "1" / "model.pt")
        sample = lab3.benchmark_inputs(clf)
        with start_server(repo, model_control_mode="explicit") as server:
            server.load_model(lab3.ENSEMBLE)
            # the lab's own checkpoint, on this device: Triton's logits vs model.pt in-process (fp32 on the CPU)
            (verdict,) = evaluate(["lab3.outputs_correct"], Path(tmp), ServerInfo(server.http_url), record=False)
            placed = [line.split("classifier/1/model.pt on ")[-1].strip('" ') for line in server.logs().splitlines()
                      if "classifier/1/model.pt on " in line]  # fmt: skip
            results["correctness"] = {"status": str(verdict.status), "message": verdict.message, "instances": placed}
            print(f"lab3.outputs_correct: {verdict.status}: {verdict.message}; {placed}", flush=True)

            # 1. dynamic batching gain, interleaved so drift hits both alike
            runs: dict[str, list] = {NO_BATCHING.name: [], BATCHING.name: []}
            for _ in range(args.reps):
                for variant in (NO_BATCHING, BATCHING):
                    lab3.load_variant(server, variant, kind=kind)
                    table = run_bench(server, lab3.CLASSIFIER, tool="builtin", protocol="grpc", concurrency=concurrency,
                                      inputs=sample, progress=False, **common)  # fmt: skip
                    runs[variant.name].append(table.rows[0])
            gain = {name: summarise(rows) for name, rows in runs.items()}
            ratio = gain[BATCHING.name]["throughput"] / gain[NO_BATCHING.name]["throughput"]
            paired = [b.throughput / n.throughput for n, b in zip(*runs.values(), strict=True)]
            results["dynamic_batching"] = {"concurrency": concurrency, "protocol": "grpc", **gain,
                                           "throughput_ratio": round(ratio, 2),
                                           "per_rep_ratios": [round(r, 2) for r in paired]}  # fmt: skip
            print(f"dynamic batching at c={concurrency}: {ratio:.2f}x ({gain})", flush=True)

            # 2. the naive transformers pipeline vs Triton + dynamic batching, same HTTP client
            if not args.no_naive:
                text = {"TEXT": np.array([lab3.SAMPLE_TEXTS[0]], dtype=object)}
                naive_c = 16
                with NaiveServer(clf.save_pretrained(Path(tmp) / "naive"), device=args.device) as naive:
                    naive_rows = [run_bench(naive.http_url, lab3.ENSEMBLE, tool="builtin", protocol="http",
                                            concurrency=naive_c, inputs=text, progress=False, **common).rows[0]
                                  for _ in range(args.reps)]  # fmt: skip
                triton = measure(server, lab3.ENSEMBLE, args.reps, protocol="http", concurrency=naive_c, inputs=text,
                                 **common)  # fmt: skip
                naive = summarise(naive_rows)
                versus = round(triton["throughput"] / naive["throughput"], 2)
                paired = [t / n for n, t in zip(naive["throughputs"], triton["throughputs"], strict=True)]
                results["naive_baseline"] = {"concurrency": naive_c, "protocol": "http", "naive": naive,
                                             "triton_ensemble": triton, "throughput_ratio": versus,
                                             "per_rep_ratios": [round(r, 2) for r in paired]}  # fmt: skip
                print(f"Triton ensemble vs naive pipeline at c={naive_c}: {results['naive_baseline']}", flush=True)

            # 3. serving efficiency at client batch B
            best = {}
            # a second instance overlaps one batch's host work with another's compute
            for instances in args.efficiency_instances:
                variant = lab3.Variant(f"batching, {instances} instance(s)", max_queue_delay_us=0, instances=instances)
                lab3.load_variant(server, variant, kind=kind)
                for c in args.efficiency_concurrency:
                    best[f"{instances} instance(s), c={c}"] = measure(
                        server, lab3.CLASSIFIER, args.reps, protocol="grpc", concurrency=c, inputs=sample,
                        batch_size=args.batch, **common,
                    )  # fmt: skip
        # in-process reference after the server stopped, so nothing else competes for the device
        reference = in_process(model_pt, clf, args.batch, args.device, args.seconds)
        top = max(best.values(), key=lambda r: r["throughput"])
        results["serving_efficiency"] = {
            "batch": args.batch,
            "in_process_samples_per_s": round(reference, 1),
            "triton_by_config": best,
            "triton_best_samples_per_s": top["throughput"],
            "fraction": round(top["throughput"] / reference, 2),
        }
        print(f"serving efficiency at batch {args.batch}: {results['serving_efficiency']}", flush=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
