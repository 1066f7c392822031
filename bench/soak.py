"""Soak: the lab-3 deployment under steady load for a long time; no failed request, no growing server memory.

    .venv/bin/python bench/soak.py [--duration-s 600] [--concurrency 64] [--out bench/results/cpu_soak.json]

The lab-3 deployment as the lab builds it (tokenizer -> classifier with dynamic batching -> postprocess, the
``text_classifier`` ensemble, on an embedded Triton in explicit mode), loaded over gRPC by the project's builtin
load generator in consecutive windows of ``--window-s``. Failed requests are counted by the client (every window)
and by Triton (each model's ``fail`` count). The RSS of tritonserver and its python backend stubs is sampled
with psutil all along; growth compares the steady state after warm-up (median over the first window after
``--warmup-s``) with the end (median over the last window). Exit status 1 if a request failed or RSS grew by
``--max-rss-growth-pct`` or more.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from tritonlab.bench.inputs import InputSet
from tritonlab.bench.loadgen import GrpcTransport, RequestFailed, prefer_classic_grpc_client
from tritonlab.labs import lab3
from tritonlab.server import start_server

ROOT = Path(__file__).resolve().parents[1]
MODELS = (lab3.ENSEMBLE, lab3.TOKENIZER, lab3.CLASSIFIER, lab3.POSTPROCESS)
BATCHING = lab3.Variant("dynamic batching", max_queue_delay_us=0)


class RssSampler:
    """RSS of a process tree (tritonserver + its python stubs) every ``interval`` s, in a thread."""

    def __init__(self, pid: int, interval: float) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.started = time.monotonic()
        self.samples: list[dict[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, object]:
        by_name: dict[str, int] = {}
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                name, rss = proc.name(), proc.memory_info().rss
            except psutil.Error:
                continue
            by_name[name] = by_name.get(name, 0) + rss
        return {"t_s": round(time.monotonic() - self.started, 2), "rss_bytes": sum(by_name.values()),
                "processes": len(self.root.children(recursive=True)) + 1, "by_name": by_name}  # fmt: skip

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except psutil.Error:  # the server died: the failed requests tell the story
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Load:
    """Every request of a soak: completion times and latencies of those that worked, (time, message) of the rest."""

    start_ns: int
    done_ns: list[int] = field(default_factory=list)
    latency_ns: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def windows(self, window_s: float) -> list[dict[str, object]]:
        done = (np.asarray(self.done_ns, dtype=np.int64) - self.start_ns) / 1e9
        latency_ms = np.asarray(self.latency_ns, dtype=np.int64) / 1e6
        failed = (np.asarray([t for t, _ in self.errors], dtype=np.int64) - self.start_ns) / 1e9
        rows = []
        for k in range(max(1, int(np.ceil(self.seconds / window_s)))):
            lo, hi = k * window_s, min((k + 1) * window_s, self.seconds)
            inside = (done >= lo) & (done < hi) if k + 1 < np.ceil(self.seconds / window_s) else done >= lo
            lat = latency_ms[inside]
            rows.append({"t_s": round(hi, 1), "requests": int(inside.sum()),
                         "errors": int(((failed >= lo) & (failed < hi)).sum()),
                         "throughput": round(float(inside.sum()) / max(hi - lo, 1e-9), 1),
                         "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
                         "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None})  # fmt: skip
        return rows


async def closed_loop(transport: GrpcTransport, concurrency: int, duration_s: float, report_s: float,
                      sampler: RssSampler) -> Load:  # fmt: skip
    """``concurrency`` workers send back to back until ``duration_s``; then each finishes the request it has in
    flight (nothing is cancelled, so Triton's fail counts see only real failures)."""
    await transport.open()
    clock = time.perf_counter_ns
    load = Load(clock())
    deadline = load.start_ns + int(duration_s * 1e9)

    async def worker() -> None:
        while clock() < deadline:
            start = clock()
            try:
                await transport.send()
            except RequestFailed as e:
                load.errors.append((clock(), e.message))
                continue
            end = clock()
            load.done_ns.append(end)
            load.latency_ns.append(end - start)

    async def report() -> None:
        seen = 0
        while clock() < deadline:
            await asyncio.sleep(min(report_s, max(0.0, (deadline - clock()) / 1e9)))
            count = len(load.done_ns)
            rss = sampler.samples[-1]["rss_bytes"] / 2**20 if sampler.samples else 0.0
            print(
                f"  {(clock() - load.start_ns) / 1e9:6.0f} s: {(count - seen) / report_s:6.1f} req/s, "
                f"{len(load.errors)} failed, server rss {rss:.0f} MiB",
                flush=True,
            )
            seen = count

    try:
        await asyncio.gather(report(), *(worker() for _ in range(concurrency)))
    finally:
        load.seconds = (clock() - load.start_ns) / 1e9
        await transport.close()
    return load


def server_counts(server) -> dict[str, dict[str, int]]:
    """Triton's own success and fail counts per model (all versions)."""
    counts = {}
    for entry in server.model_stats().get("model_stats", []):
        stats = entry.get("inference_stats", {})
        counts[entry["name"]] = {"success": int(stats.get("success", {}).get("count", 0)),
                                 "fail": int(stats.get("fail", {}).get("count", 0))}  # fmt: skip
    return counts


def rss_growth(samples: list[dict], warmup_s: float, window_s: float) -> dict[str, object]:
    """Median RSS over [warmup, warmup + window] (steady state) against the median over the last window."""
    end_t = samples[-1]["t_s"]
    steady = [s["rss_bytes"] for s in samples if warmup_s <= s["t_s"] <= warmup_s + window_s]
    last = [s["rss_bytes"] for s in samples if s["t_s"] >= end_t - window_s]
    if not steady or not last:
        raise SystemExit(f"too few RSS samples ({len(samples)}) for warm-up {warmup_s} s and window {window_s} s")
    base, end = statistics.median(steady), statistics.median(last)
    return {"steady_state_mib": round(base / 2**20, 1), "end_mib": round(end / 2**20, 1),
            "growth_pct": round(100 * (end - base) / base, 2), "peak_mib": round(max(s["rss_bytes"] for s in samples)
            / 2**20, 1), "steady_samples": len(steady), "end_samples": len(last)}  # fmt: skip


def git_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0, help="seconds under load (default 600)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="write the figures here (JSON)")
    parser.add_argument("--window-s", type=float, default=None, help="load window (default duration/20, <= 30 s)")
    parser.add_argument("--warmup-s", type=float, default=None, help="RSS warm-up (default duration/10, <= 60 s)")
    parser.add_argument("--sample-s", type=float, default=None, help="RSS sampling interval (default window/10)")
    parser.add_argument("--max-rss-growth-pct", type=float, default=5.0)
    args = parser.parse_args()
    window = args.window_s or min(30.0, args.duration_s / 20)
    warmup = args.warmup_s if args.warmup_s is not None else min(60.0, args.duration_s / 10)
    sample_every = args.sample_s or max(0.2, min(5.0, window / 10))
    prefer_classic_grpc_client()  # before anything imports grpc, as `tritonlab bench` does

    started_at = datetime.datetime.now(datetime.UTC)
    clf = lab3.build_classifier()
    with tempfile.TemporaryDirectory(prefix="tritonlab-soak-") as tmp:
        repo = lab3.prepare_repository(Path(tmp) / "lab3_repo", clf, variant=BATCHING)
        lab3.export_torchscript(clf, repo / lab3.CLASSIFIER / "1" / "model.pt")
        with start_server(repo, model_control_mode="explicit") as server:
            server.load_model(lab3.ENSEMBLE)
            text = {"TEXT": np.array([lab3.SAMPLE_TEXTS[0]], dtype=object)}
            inputs = InputSet.from_model(server.http_url, lab3.ENSEMBLE, arrays=text)
            before = server_counts(server)
            with RssSampler(server.pid, sample_every) as sampler:
                transport = GrpcTransport(server.grpc_url, lab3.ENSEMBLE, inputs, batch_size=1)
                load = asyncio.run(closed_loop(transport, args.concurrency, args.duration_s, window, sampler))
                sampler.samples.append(sampler.sample())
            after = server_counts(server)
            processes_end = sampler.samples[-1]["processes"]
    windows = load.windows(window)
    requests, client_failed, loaded_s = len(load.done_ns), len(load.errors), load.seconds
    server_failed = {m: after.get(m, {}).get("fail", 0) - before.get(m, {}).get("fail", 0) for m in MODELS}
    memory = rss_growth(sampler.samples, warmup, window)
    by_name_start = sampler.samples[0]["by_name"]
    by_name_end = sampler.samples[-1]["by_name"]
    passed = client_failed == 0 and not any(server_failed.values()) and memory["growth_pct"] < args.max_rss_growth_pct
    results = {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": {
            "node": platform.node(),
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": git_commit(),
        "deployment": f"lab 3 {lab3.ENSEMBLE} ensemble ({' -> '.join(MODELS[1:])}), classifier {BATCHING.as_dict()}",
        "load": {
            "tool": "tritonlab builtin load generator",
            "protocol": "grpc",
            "concurrency": args.concurrency,
            "duration_s": round(loaded_s, 1),
            "window_s": window,
        },
        "requests": requests,
        "failed_requests": {"client": client_failed, "server": server_failed},
        "server_success": {m: after.get(m, {}).get("success", 0) - before.get(m, {}).get("success", 0) for m in MODELS},
        "throughput_rps": {
            "overall": round(requests / loaded_s, 1),
            "min_window": min(w["throughput"] for w in windows),
            "max_window": max(w["throughput"] for w in windows),
        },
        "latency_ms": {
            "p50": round(float(np.percentile(np.asarray(load.latency_ns) / 1e6, 50)), 2),
            "p99": round(float(np.percentile(np.asarray(load.latency_ns) / 1e6, 99)), 2),
            "p99_max_window": max(w["p99_ms"] or 0.0 for w in windows),
        },
        "server_rss": {
            **memory,
            "warmup_s": warmup,
            "window_s": window,
            "sample_every_s": sample_every,
            "processes_end": processes_end,
            "start_mib_by_process": {k: round(v / 2**20, 1) for k, v in by_name_start.items()},
            "end_mib_by_process": {k: round(v / 2**20, 1) for k, v in by_name_end.items()},
        },
        "gate": {"max_rss_growth_pct": args.max_rss_growth_pct, "passed": passed},
        "first_errors": [message for _, message in load.errors[:5]],
        "windows": windows,
        "rss_series_mib": [[s["t_s"], round(s["rss_bytes"] / 2**20, 1)] for s in sampler.samples],
    }
    text = json.dumps(results, indent=2)
    print(json.dumps({k: v for k, v in results.items() if k not in ("windows", "rss_series_mib")}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
