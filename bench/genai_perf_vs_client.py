"""genai-perf 0.0.16 (with perf_analyzer 2.51) vs the course's streaming client on the same server and load.

    python3 -m venv /tmp/genai-venv && /tmp/genai-venv/bin/pip install genai-perf==0.0.16
    .venv/bin/python bench/genai_perf_vs_client.py --genai-perf /tmp/genai-venv --out bench/results/cpu_genai_perf.json

One embedded server (in-flight batching) on the lab engine. At each concurrency, repetitions alternate the two tools
(genai-perf, client, genai-perf, ...); the client sends genai-perf's own prompts (from its perf_analyzer records) with
the same max_tokens, ``ignore_eos`` and concurrency, after the same number of warm-up requests. Three sets of figures
per repetition: genai-perf's report, our ``llm_metrics`` on perf_analyzer's timestamps (same requests, our token
count), and our client's own measurement.
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
from typing import Any

KEYS = ("time_to_first_token", "inter_token_latency", "request_latency", "output_sequence_length")


def summary(metrics: dict[str, Any]) -> dict[str, float]:
    out = {f"{k}_avg": metrics[k]["avg"] for k in KEYS}
    out |= {f"{k}_p50": metrics[k]["p50"] for k in KEYS[:3]}
    out |= {"output_token_throughput": metrics["output_token_throughput"]}
    out |= {"request_throughput": metrics["request_throughput"], "requests": metrics["requests"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genai-perf", required=True, help="genai-perf's venv (or the executable)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--input-tokens", type=int, default=16)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from tritonlab.engine.build import build_engine
    from tritonlab.engine.convert import convert_checkpoint
    from tritonlab.engine.model import make_llama
    from tritonlab.engine.serving import prepare_repository
    from tritonlab.engine.serving.client import llm_metrics, stream_load
    from tritonlab.engine.serving.genai_perf import VERSION, find_genai_perf, run_genai_perf
    from tritonlab.server import start_server

    find_genai_perf(args.genai_perf)  # a clear error before anything is built
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "genai_perf": VERSION, "perf_analyzer": "2.51.0 (tritonclient wheel)",
        "workload": {"input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
                     "requests": args.requests, "warmup_requests": 4, "ignore_eos": True},
        "levels": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tritonlab-genai-bench-") as tmp:
        work = Path(tmp)
        hf = make_llama(work / "hf")
        ckpt = convert_checkpoint(hf, work / "ckpt", dtype="float32")
        engine = build_engine(ckpt, work / "engine", progress=False).engine_dir
        repo = prepare_repository(engine, work / "repo", batching_strategy="inflight", step_log=False)
        with start_server(repo) as server:
            for concurrency in args.concurrency:
                runs = []
                for rep in range(args.repetitions):
                    started = time.time()
                    gp = run_genai_perf(
                        server.grpc_url, tokenizer=engine, genai_perf=args.genai_perf, concurrency=concurrency,
                        input_tokens=args.input_tokens, output_tokens=args.output_tokens,
                        request_count=args.requests, warmup_requests=4, seed=rep,
                    )  # fmt: skip
                    gp_wall = time.time() - started
                    requests = [(r.prompt, r.max_tokens) for r in gp.records]
                    stream_load(server.grpc_url, requests[:4], concurrency=concurrency)  # warm-up, as genai-perf
                    ours = stream_load(server.grpc_url, requests, concurrency=concurrency)
                    runs.append({
                        "genai_perf": summary(gp.metrics),
                        "ours_on_pa_timestamps": summary(llm_metrics(gp.records)),
                        "our_client": summary(llm_metrics(ours)),
                        "genai_perf_wall_s": gp_wall,
                    })  # fmt: skip
                    print(f"c={concurrency} rep {rep}: " + json.dumps(runs[-1]), flush=True)
                results["levels"][str(concurrency)] = {
                    "runs": runs,
                    "median": {
                        source: {k: statistics.median(r[source][k] for r in runs) for k in runs[0][source]}
                        for source in ("genai_perf", "ours_on_pa_timestamps", "our_client")
                    },
                    "command": gp.command,
                }
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
