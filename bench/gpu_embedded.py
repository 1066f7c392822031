"""The embedded server serving a torch model on a GPU: KIND_GPU instance, CUDA tensors in the python backend.

    python bench/gpu_embedded.py [--seconds 5] [--concurrency 1 8 32] [--out results.json]

Serves examples.torch_mlp (fp16 on cuda:0) and, side by side in the same run, the same model on KIND_CPU
(fp32). Checks Triton's answers against the module run in-process, reads the model's own log lines saying
where tensors live, then drives each with gRPC binary tensors at several concurrencies (medians of request
latencies, throughput, average batch size from /stats, GPU memory from the metrics endpoint).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from tritonlab.examples.torch_mlp import IN_FEATURES, MODEL_NAME, build_mlp, write_torch_mlp_repository
from tritonlab.server import start_server


def load(server, concurrency: int, seconds: float, batch: int) -> dict[str, float]:
    x = np.random.default_rng(0).standard_normal((batch, IN_FEATURES)).astype(np.float32)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    stop_at = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        request = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            client.infer(MODEL_NAME, [request])
            latencies[slot].append(time.perf_counter() - t0)
        client.close()

    before = grpc_stats(server)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    after = grpc_stats(server)
    flat = sorted(v for slot in latencies for v in slot)
    executions = int(after["execution_count"]) - int(before["execution_count"])
    inferences = int(after["inference_count"]) - int(before["inference_count"])
    return {
        "concurrency": concurrency,
        "requests": len(flat),
        "infer_per_s": round(len(flat) * batch / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(flat), 3),
        "p99_ms": round(1000 * flat[int(0.99 * (len(flat) - 1))], 3),
        "avg_batch": round(inferences / max(executions, 1), 2),
    }


def grpc_stats(server) -> dict:
    # gRPC, so this also runs where tritonclient's HTTP extra (gevent) is not installed; int64s come as strings.
    return server.grpc_client().get_inference_statistics(MODEL_NAME, as_json=True)["model_stats"][0]


def gpu_gauges(server) -> dict[str, float]:
    gauges = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        if family.name in ("nv_gpu_memory_used_bytes", "nv_gpu_utilization", "nv_gpu_memory_total_bytes"):
            for sample in family.samples:
                gauges[family.name] = sample.value
    return gauges


def serve(device: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_torch_mlp_repository(tmp, device=device)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        with start_server(repo, startup_timeout=300) as server:
            ready_s = time.perf_counter() - t0
            x = np.random.default_rng(1).standard_normal((8, IN_FEATURES)).astype(np.float32)
            request = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
            request.set_data_from_numpy(x)
            got = server.grpc_client().infer(MODEL_NAME, [request]).as_numpy("OUTPUT")
            dtype = torch.float16 if device == "cuda" else torch.float32
            with torch.inference_mode():
                same_device = build_mlp().to(device, dtype)(torch.from_numpy(x).to(device, dtype)).float().cpu().numpy()
                fp32_cpu = build_mlp()(torch.from_numpy(x)).numpy()
            log = server.logs()
            runs = [load(server, c, args.seconds, args.batch) for c in args.concurrency]
            gauges = gpu_gauges(server)
    return {
        "device": device,
        "start_to_ready_s": round(ready_s, 2),
        "max_abs_diff_vs_in_process_same_dtype": float(np.abs(got - same_device).max()),
        "max_abs_diff_vs_fp32_cpu": float(np.abs(got - fp32_cpu).max()),
        "model_log": [line.split('"')[1] for line in log.splitlines() if "torch_mlp:" in line and '"' in line],
        "load": runs,
        "gpu_gauges": gauges,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1, help="rows per request (1: let dynamic batching work)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    devices = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    results = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "runs": [serve(d, args) for d in devices],
    }
    if len(results["runs"]) == 2:
        gpu, cpu = results["runs"]
        results["gpu_over_cpu_throughput"] = {
            str(g["concurrency"]): round(g["infer_per_s"] / c["infer_per_s"], 2)
            for g, c in zip(gpu["load"], cpu["load"], strict=True)
        }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
