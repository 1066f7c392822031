"""Lab 5 (05_trtllm_workflow): what the notebook calls around the learner's code.

The lab runs Track B end to end (make the model -> convert -> build an engine for this machine -> serve it with
in-flight batching -> benchmark) and teaches Track A's real TensorRT-LLM 1.2.x commands beside it. Everything the
checkpoints read is saved here: ``RESULTS`` holds each batching measurement with the streamed records, Triton's
statistics before and after, and the server-side step log of the requests it served.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonlab.errors import TritonLabError

MODEL_DIR, CHECKPOINT_DIR, ENGINE_DIR, REPO = "lab5_model", "lab5_ckpt", "lab5_engine", "lab5_repo"
RESULTS = "lab5_results.json"
CURVE_PNG = "lab5_curve.png"
STRATEGIES = ("inflight", "static")
ENSEMBLE, LLM = "ensemble", "llm"


@dataclass(frozen=True)
class ServingNeeds:
    """What the service must handle; the build limits follow from it (max_seq_len = prompt + answer)."""

    concurrent_sequences: int
    prompt_tokens: int
    answer_tokens: int

    @property
    def limits(self) -> dict[str, int]:
        return {
            "max_batch_size": self.concurrent_sequences,
            "max_input_len": self.prompt_tokens,
            "max_seq_len": self.prompt_tokens + self.answer_tokens,
        }


# Track B: the engine the learner builds here.
LAB_NEEDS = ServingNeeds(concurrent_sequences=8, prompt_tokens=32, answer_tokens=128)
# Track A: the deployment the learner writes TensorRT-LLM 1.2.x commands for (not run here).
TRTLLM_NEEDS = ServingNeeds(concurrent_sequences=64, prompt_tokens=2048, answer_tokens=512)
TRTLLM_SCENARIO = {
    "model_dir": "Llama-3.1-8B-Instruct",
    "tp_size": 2,
    "dtype": "float16",
    "weight_only_precision": "int8",
    **TRTLLM_NEEDS.limits,
}

PROMPTS = ("once upon a time", "the server loads a model", "tell me about the key and value cache")
WORKLOAD_REQUESTS, WORKLOAD_CONCURRENCY, WORKLOAD_SEED = 16, 8, 5
ANSWER_RANGE = (8, 96)  # output lengths drawn log-uniformly: many short answers, a few long ones (chat traffic)


def output_lengths(
    n: int, *, lengths: tuple[int, int] = ANSWER_RANGE, seed: int = WORKLOAD_SEED, distribution: str = "loguniform"
) -> list[int]:
    """``n`` seeded output lengths in ``lengths``: log-uniform (many short, a few long) or uniform."""
    rng = random.Random(seed)
    lo, hi = lengths
    if distribution == "uniform":
        return [rng.randint(lo, hi) for _ in range(n)]
    return [round(math.exp(rng.uniform(math.log(lo), math.log(hi)))) for _ in range(n)]


def mixed_requests(
    n: int = WORKLOAD_REQUESTS,
    *,
    lengths: tuple[int, int] = ANSWER_RANGE,
    seed: int = WORKLOAD_SEED,
    distribution: str = "loguniform",
) -> list[tuple[str, int]]:
    """``n`` (prompt, max_tokens) pairs with :func:`output_lengths`, the same list for every strategy."""
    answers = output_lengths(n, lengths=lengths, seed=seed, distribution=distribution)
    return [(PROMPTS[i % len(PROMPTS)], tokens) for i, tokens in enumerate(answers)]


def set_batching(server: Any, strategy: str) -> None:
    """Reload ``llm`` with ``batching_strategy`` = inflight | static (the serving-side choice, like TRT-LLM's
    ``batching_strategy: inflight_fused_batching | v1``); the engine and every other setting stay as loaded."""
    if strategy not in STRATEGIES:
        raise TritonLabError(f"batching strategy {strategy!r}", fix=f"use one of {', '.join(STRATEGIES)}")
    config = server.model_config(LLM)  # Triton's JSON of the loaded config, which its load API accepts back
    config.setdefault("parameters", {})["batching_strategy"] = {"string_value": strategy}
    server.load_model(LLM, config=config)


def serving_strategy(server: Any) -> str:
    """The ``batching_strategy`` the server's ``llm`` model runs with now (from the config Triton loaded)."""
    params = server.model_config(LLM).get("parameters", {})
    return str(params.get("batching_strategy", {}).get("string_value", "inflight"))


def _model_counts(server: Any, model: str) -> dict[str, int]:
    stats = server.model_stats(model)["model_stats"][0]
    inference = stats.get("inference_stats", {})
    return {
        "success": int(inference.get("success", {}).get("count", 0)),
        "fail": int(inference.get("fail", {}).get("count", 0)),
    }


def _settled_counts(server: Any, ensemble_requests: int, timeout_s: float = 5.0) -> dict[str, dict[str, int]]:
    """Triton's counts once the ensemble has counted ``ensemble_requests``: a decoupled request is counted when it
    is released, just after its last response reached the client."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = {m: _model_counts(server, m) for m in (ENSEMBLE, LLM)}
        done = counts[ENSEMBLE]["success"] + counts[ENSEMBLE]["fail"]
        if done >= ensemble_requests or time.monotonic() > deadline:
            return counts
        time.sleep(0.02)


def _read_results(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        raise TritonLabError(f"{path} cannot be read ({e})", fix=f"delete {path} and measure again") from None
    return data if isinstance(data, dict) else {}


def measure_batching(
    server: Any,
    strategy: str,
    requests: list[tuple[str, int]] | None = None,
    *,
    concurrency: int = WORKLOAD_CONCURRENCY,
    repository: str | Path = REPO,
    results: str | Path = RESULTS,
) -> list[Any]:
    """Serve ``requests`` with ``strategy`` and save what happened (client records + server statistics) to
    ``results``; returns the client's StreamRecords."""
    from tritonlab.engine.serving import read_step_log
    from tritonlab.engine.serving.client import stream_load

    requests = requests or mixed_requests()
    set_batching(server, strategy)
    stream_load(server.grpc_url, [(PROMPTS[0], 4)] * concurrency, concurrency=concurrency)  # warm-up, not saved
    before = _settled_counts(server, concurrency)  # the warm-up's requests included
    records = stream_load(server.grpc_url, requests, concurrency=concurrency)
    after = _settled_counts(server, before[ENSEMBLE]["success"] + before[ENSEMBLE]["fail"] + len(requests))
    ids = {r.request_id for r in records}
    log = _wait_for_finishes(repository, ids, read_step_log)
    groups = server.model_config(LLM).get("instance_group") or [{}]
    path = Path(results)
    saved = _read_results(path)
    saved[strategy] = {
        "strategy": strategy,
        "instance_kind": groups[0].get("kind", "KIND_CPU"),  # where the engine ran: KIND_GPU for a cuda engine
        "server": server.http_url,
        "concurrency": concurrency,
        "requests": [list(r) for r in requests],
        "records": [r.as_dict() for r in records],
        "stats_before": before,
        "stats_after": after,
        "events": [e for e in log if e["event"] != "step" and e.get("id") in ids],  # admissions and finishes
        "steps": [e for e in log if e["event"] == "step" and ids.intersection(e["ids"])],
        "saved_at": time.time(),
    }
    path.write_text(json.dumps(saved))
    return records


def _wait_for_finishes(repository: str | Path, ids: set[str], read: Any, timeout_s: float = 5.0) -> list[Any]:
    # The step log is written by the model's thread right after each token is sent: a few ms behind the client.
    deadline = time.monotonic() + timeout_s
    while True:
        events = read(repository)
        finished = {e["id"] for e in events if e["event"] == "finish"}
        if ids <= finished or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def load_records(results: str | Path = RESULTS) -> dict[str, list[Any]]:
    """The StreamRecords saved by :func:`measure_batching`, per strategy."""
    from tritonlab.engine.serving.client import StreamRecord

    saved = _read_results(Path(results))
    return {s: [StreamRecord(**r) for r in saved[s]["records"]] for s in STRATEGIES if s in saved}


def sweep(
    server: Any, concurrencies: tuple[int, ...] = (1, 2, 4, 8), *, requests_per_stream: int = 2
) -> list[dict[str, Any]]:
    """Throughput vs latency over concurrency (in-flight batching): genai-perf's metrics at each level."""
    from tqdm.auto import tqdm

    from tritonlab.engine.serving.client import llm_metrics, stream_load

    set_batching(server, "inflight")  # measure_batching leaves the strategy it measured last
    rows = []
    with tqdm(total=len(concurrencies), desc="concurrency sweep", unit="level") as bar:
        for c in concurrencies:
            requests = mixed_requests(c * requests_per_stream, lengths=(32, 32), seed=c)
            metrics = llm_metrics(stream_load(server.grpc_url, requests, concurrency=c))
            rows.append({"concurrency": c, **metrics})
            bar.update(1)
    return rows


def plot_curve(rows: list[dict[str, Any]], path: str | Path = CURVE_PNG) -> Any:
    """Output tokens/s against time to first token and inter-token latency, one point per concurrency."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    tps = [r["output_token_throughput"] for r in rows]
    for ax, key, label in (
        (axes[0], "time_to_first_token", "time to first token p50 (ms)"),
        (axes[1], "inter_token_latency", "inter-token latency p50 (ms)"),
    ):
        xs = [r[key]["p50"] for r in rows]
        ax.plot(xs, tps, marker="o")
        for x, y, r in zip(xs, tps, rows, strict=True):
            ax.annotate(f"c={r['concurrency']}", (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(label)
        ax.set_ylabel("output tokens/s")
        ax.grid(alpha=0.3)
    fig.suptitle("Throughput vs latency (in-flight batching)")
    fig.savefig(path, dpi=110)
    plt.close(fig)  # shown where the caller displays it, not a second time by the inline backend
    return fig


def plot_timeline(results: str | Path = RESULTS) -> Any:
    """Each request's life on the server (admitted -> finished, from the step log), one panel per strategy."""
    import matplotlib.pyplot as plt

    saved = _read_results(Path(results))
    shown = [s for s in STRATEGIES if s in saved]
    if not shown:
        raise TritonLabError(f"{results} holds no measurement", fix="run measure_batching(server, strategy) first")
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 1.2 + 2.2 * len(shown)), sharex=True, squeeze=False)
    for ax, strategy in zip(axes[:, 0], shown, strict=True):
        events = saved[strategy]["events"]
        admits = {e["id"]: e["t"] for e in events if e["event"] == "admit"}
        finishes = {e["id"]: (e["t"], e["tokens"]) for e in events if e["event"] == "finish"}
        start = min(admits.values(), default=0.0)
        order = sorted(admits, key=lambda rid: admits[rid])
        for row, rid in enumerate(order):
            if rid in finishes:
                end, tokens = finishes[rid]
                ax.barh(row, end - admits[rid], left=admits[rid] - start, height=0.7, color="tab:blue", alpha=0.7)
                ax.text(end - start, row, f" {tokens}", va="center", fontsize=7)
        span = max((t for t, _ in finishes.values()), default=start) - start
        ax.set_title(f"{strategy} batching: {len(order)} requests served in {span:.1f} s (bar label: tokens)")
        ax.set_ylabel("request")
        ax.invert_yaxis()
    axes[-1, 0].set_xlabel("seconds since the first admission (server clock)")
    fig.tight_layout()
    plt.close(fig)  # shown where the caller displays it, not a second time by the inline backend
    return fig


def metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of llm_metrics per label (strategy or concurrency)."""
    lines = [f"{'':10} {'tokens/s':>9} {'req/s':>6} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}"]
    for label, m in metrics.items():
        ttft, itl = m["time_to_first_token"], m["inter_token_latency"]
        lines.append(
            f"{label:10} {m['output_token_throughput']:9.1f} {m['request_throughput']:6.2f} {ttft['p50']:7.1f}ms "
            f"{ttft['p99']:7.1f}ms {itl.get('p50', float('nan')):6.1f}ms {itl.get('p99', float('nan')):6.1f}ms"
        )
    return "\n".join(lines)
