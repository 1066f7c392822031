"""Lab 5 (05_trtllm_workflow) checkpoints: TensorRT-LLM 1.2.x commands that the real tools would accept for the
lab's scenario, an engine built for this machine that enforces its limits (offline and on the live server), a
streaming client that gets the served tokens one by one, the learner's TTFT/ITL on recorded timestamps, and
in-flight batching beating static batching on the learner's own measurement, consistent with the server's records.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tritonlab.checks.core import Context, Fail, Unattempted, checkpoint
from tritonlab.checks.learner import Worker
from tritonlab.checks.values import SubmittedFunction

# In-flight over static output tokens/s on the lab's mixed-length workload, by where the llm instance ran. On a CPU
# a decode step costs in proportion to its batch, so static batching pays for every padded slot: 1.25-2.0x measured
# on 2 cores (the client, Triton and the model share them). On a GPU this 2-layer model's step costs about the same
# for 1 or 8 sequences and the per-token response path dominates: 1.03-1.33x on the H200. So the tokens/s bar is
# "clearly ahead" on CPU and "not slower" on GPU, and the robust signs are the two below.
MIN_SPEEDUP = {"KIND_CPU": 1.1, "KIND_GPU": 0.95}
MIN_TTFT_GAIN = 2.0  # static mean TTFT / in-flight mean TTFT: waiting for a whole batch (4-10x measured, CPU and GPU)
MAX_STEP_SHARE = 0.85  # in-flight decode steps / static ones for the same tokens (0.58-0.69 measured, CPU and GPU)
RATIO_AGREEMENT = 0.25  # the server's own tokens/s ratio may differ from the client's by this much (relative)
VALUE_TOLERANCE = 0.01  # learner's submitted numbers vs the check's recomputation from the saved records
PROMPT, PROMPT_TOKENS_OUT = "once upon a time", 12
LEARNER_CALL_TIMEOUT_S = 60.0


def _server_error(ctx: Context, e: Exception) -> Fail:
    return Fail(f"the server at {ctx.require_server().http_url} did not answer as expected: {e}")


# ---------------------------------------------------------------------------------------------- Track A commands


@checkpoint(
    "lab5.trtllm_commands",
    title="Your TensorRT-LLM 1.2.x commands convert and build the scenario's engine with flags the tools accept",
    points=2,
    needs_server=False,
    hint="Two commands: convert_checkpoint.py (tp and int8 weight-only are conversion options) then trtllm-build "
    "--checkpoint_dir <the conversion's --output_dir> with --max_batch_size, --max_input_len and --max_seq_len "
    "(= prompt + answer; there is no --max_output_len).",
)
def trtllm_commands(ctx: Context) -> str:
    from tritonlab.engine.trtllm import validate_command
    from tritonlab.labs.lab5 import TRTLLM_SCENARIO

    commands = ctx.value("commands")
    if not isinstance(commands, list) or not commands or not all(isinstance(c, str) for c in commands):
        raise Fail(f"submit a list of command lines (strings), got {commands!r}")
    reports = [validate_command(c) for c in commands]
    problems = [f"command {i + 1}: {e}" for i, r in enumerate(reports) for e in r.errors]
    if problems:
        raise Fail("; ".join(problems))
    tools = [r.tool for r in reports]
    if tools != ["convert_checkpoint.py", "trtllm-build"]:
        raise Fail(f"expected convert_checkpoint.py then trtllm-build, got {tools}")
    convert, build = reports
    want = TRTLLM_SCENARIO
    wrong = []
    if convert.int_arg("--tp_size") != want["tp_size"]:
        wrong.append(f"--tp_size {convert.args.get('--tp_size')} (the engine must span {want['tp_size']} GPUs: "
                     "tensor parallelism is decided at conversion)")  # fmt: skip
    if convert.args.get("--dtype") != want["dtype"]:
        wrong.append(f"--dtype {convert.args.get('--dtype')} (want {want['dtype']})")
    if convert.args.get("--use_weight_only") is not True or convert.args.get("--weight_only_precision") != "int8":
        wrong.append("int8 weight-only needs --use_weight_only --weight_only_precision int8 on conversion")
    if str(convert.args.get("--model_dir", "")).rstrip("/").split("/")[-1] != want["model_dir"]:
        wrong.append(f"--model_dir {convert.args.get('--model_dir')} is not the {want['model_dir']} checkpoint")
    if build.args.get("--checkpoint_dir") != convert.args.get("--output_dir"):
        wrong.append(f"trtllm-build --checkpoint_dir {build.args.get('--checkpoint_dir')} is not the conversion's "
                     f"--output_dir {convert.args.get('--output_dir')}")  # fmt: skip
    for limit in ("max_batch_size", "max_input_len", "max_seq_len"):
        if build.int_arg(f"--{limit}") != want[limit]:
            wrong.append(f"--{limit} {build.args.get(f'--{limit}')} (the service needs {want[limit]})")
    if wrong:
        raise Fail("; ".join(wrong))
    notes = (
        f" (warnings: {'; '.join(w for r in reports for w in r.warnings)})" if any(r.warnings for r in reports) else ""
    )
    return f"both commands are valid for TensorRT-LLM 1.2.x and build the scenario's engine{notes}"


# ---------------------------------------------------------------------------------------------- engine


@checkpoint(
    "lab5.engine",
    title="Your engine is compiled for this machine with the service's limits and refuses requests beyond them",
    points=2,
    needs_server=False,
    hint="max_batch_size = concurrent sequences, max_input_len = longest prompt, max_seq_len = prompt + answer "
    "tokens (input + output, like trtllm-build). Build with build_engine(CHECKPOINT_DIR, ENGINE_DIR, ...).",
)
def engine(ctx: Context) -> str:
    from tritonlab.engine.build import engine_config, load_engine
    from tritonlab.engine.runtime import LimitError
    from tritonlab.errors import TritonLabError
    from tritonlab.labs.lab5 import LAB_NEEDS

    engine_dir = ctx.path(str(ctx.value("engine_dir")))
    try:
        config = engine_config(engine_dir)
    except TritonLabError as e:
        raise Fail(e.message) from None
    built = config.get("build_config", {})
    want = LAB_NEEDS.limits
    wrong = [f"{k}={built.get(k)} (the service needs {v})" for k, v in want.items() if built.get(k) != v]
    if wrong:
        raise Fail(f"{engine_dir} was built with " + ", ".join(wrong) + f": {LAB_NEEDS.concurrent_sequences} "
                   f"sequences, prompts up to {LAB_NEEDS.prompt_tokens} tokens, answers up to "
                   f"{LAB_NEEDS.answer_tokens}")  # fmt: skip
    try:
        loaded = load_engine(engine_dir)  # refuses an engine compiled for another device class / ISA / torch
    except TritonLabError as e:
        raise Fail(e.message) from None
    refused = []
    for prompt_len, max_tokens, limit in (
        (want["max_input_len"] + 1, 1, "max_input_len"),
        (want["max_input_len"], want["max_seq_len"] - want["max_input_len"] + 1, "max_seq_len"),
    ):
        try:
            loaded.check_request(prompt_len, max_tokens)
        except LimitError as e:
            if limit in str(e):
                refused.append(limit)
    loaded.check_request(want["max_input_len"], want["max_seq_len"] - want["max_input_len"])  # the largest fit
    if refused != ["max_input_len", "max_seq_len"]:
        raise Fail(f"the engine accepted requests beyond its limits (refused only {refused})")
    device = config.get("device", {})
    where = device.get("gpu_name") or device.get("cpu_capability") or device.get("device_class")
    return (f"compiled for {device.get('device_class')} ({where}, torch {device.get('torch')}) with {want}; "
            f"requests past max_input_len and max_seq_len are refused")  # fmt: skip


# ---------------------------------------------------------------------------------------------- streaming


def _ensemble_success(ctx: Context) -> int:
    status, stats = ctx.server_get("/v2/models/ensemble/stats")
    if status != 200 or not isinstance(stats, dict) or not stats.get("model_stats"):
        raise Fail(f"no statistics for the ensemble (HTTP {status}): is the lab's repository served?")
    return int(stats["model_stats"][0].get("inference_stats", {}).get("success", {}).get("count", 0))


def _ensemble_success_reaching(ctx: Context, count: int, wait_s: float = 5.0) -> int:
    """The ensemble's success count once it reaches ``count``, or as it stands after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while (now := _ensemble_success(ctx)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def _call_with_timeout(worker: Worker, *args: Any) -> Any:
    """The learner's function's value (called in its worker process); a Fail if it raised or did not return in time."""
    value, error, elapsed = worker.call(*args, limit=LEARNER_CALL_TIMEOUT_S)
    if elapsed is None:
        raise Fail(f"your function did not return within {LEARNER_CALL_TIMEOUT_S:.0f} s (waiting for a response "
                   "that never comes? stop at the response whose triton_final_response parameter is true)")  # fmt: skip
    if error is not None:
        raise Fail(f"your function raised {type(error).__name__}: {error}")
    return value


@checkpoint(
    "lab5.streaming",
    title="Your gRPC streaming client receives the served engine's tokens one by one, and the server enforces the "
    "engine's limits",
    points=3,
    hint="start_stream(callback) once, async_stream_infer('ensemble', [text_input, max_tokens], "
    "enable_empty_final_response=True), collect text_output from each response until the response's "
    "triton_final_response parameter is true, then stop_stream().",
)
def streaming(ctx: Context) -> str:
    from tritonlab.engine.serving.client import generate_stream_http, stream_load

    fn = ctx.value("stream_tokens")
    if not isinstance(fn, SubmittedFunction):
        raise Fail(f"stream_tokens must be a function, got {type(fn).__name__}")
    info = ctx.require_server()
    if not info.grpc_address:
        raise Fail("the server's gRPC address is unknown: start it with start_server(...)")
    status, _ = ctx.server_get("/v2/models/ensemble/ready")
    if status != 200:
        raise Fail(f"the ensemble is not ready on {info.http_url} (HTTP {status}): serve the lab's repository")
    start = _ensemble_success(ctx)
    try:
        (reference,) = stream_load(info.grpc_address, [(PROMPT, PROMPT_TOKENS_OUT)], ignore_eos=False)
    except Exception as e:  # any client failure here is the server's state
        raise _server_error(ctx, e) from None
    if reference.error or len(reference.token_times) < 2:
        raise Fail(f"the server did not stream tokens: {reference.error or f'{len(reference.token_times)} response'}")
    # The reference request is counted when Triton releases it, just after its last response: wait for that count,
    # else it could land after `before` and pass for the learner's request.
    before = _ensemble_success_reaching(ctx, start + 1)
    with Worker(fn) as worker:
        got = _call_with_timeout(worker, info.grpc_address, PROMPT, PROMPT_TOKENS_OUT)
    if _ensemble_success_reaching(ctx, before + 1) <= before:
        raise Fail("your function returned without a successful request reaching the server's ensemble")
    if not isinstance(got, list) or not all(isinstance(t, str) for t in got):
        raise Fail(f"stream_tokens must return the list of text pieces, one per response; got {type(got).__name__}")
    if got != reference.texts:
        raise Fail(f"your client got {len(got)} pieces {''.join(got)!r}; the server streams {len(reference.texts)} "
                   f"pieces {reference.text!r} (one text_output per response, in order)")  # fmt: skip
    long_prompt = " ".join([PROMPT] * 200)
    try:
        for limit, request in (("max_input_len", (long_prompt, 4)), ("max_seq_len", (PROMPT, 100_000))):
            (record,) = stream_load(info.grpc_address, [request])
            if limit not in (record.error or ""):
                raise Fail(f"a request past the engine's {limit} was not refused with a message naming it "
                           f"(got {record.error or f'{len(record.token_times)} tokens'})")  # fmt: skip
        events = generate_stream_http(info.http_url, PROMPT, 4)
    except (OSError, ValueError, RuntimeError) as e:  # the server went away or answered garbage mid-check
        raise _server_error(ctx, e) from None
    if len(events) != 4 or any("text_output" not in e for e in events):
        raise Fail(f"POST /v2/models/ensemble/generate_stream did not stream 4 tokens: {events[:2]}")
    spread_ms = (reference.token_times[-1] - reference.token_times[0]) * 1e3
    return (f"{len(got)} pieces streamed over {spread_ms:.0f} ms, equal to the server's own stream; prompts past "
            f"max_input_len and answers past max_seq_len are refused; /generate_stream streams too")  # fmt: skip


# ---------------------------------------------------------------------------------------------- token metrics


def _saved(ctx: Context) -> dict[str, Any]:
    from tritonlab.labs.lab5 import RESULTS

    saved = ctx.read_json(RESULTS)
    if not isinstance(saved, dict):
        raise Fail(f"{ctx.path(RESULTS)} is not a dict of measurements: run measure_batching again")
    return saved


def _records(entry: dict[str, Any], where: str) -> list[Any]:
    from tritonlab.engine.serving.client import StreamRecord

    try:
        return [StreamRecord(**r) for r in entry["records"]]
    except (KeyError, TypeError) as e:
        raise Fail(f"{where} has malformed records ({e}): run measure_batching again") from None


def _synthetic_records() -> list[Any]:
    from tritonlab.engine.serving.client import StreamRecord

    # irregular gaps (a median or a mean over all gaps would differ) and a single-token answer (no gap at all)
    return [
        StreamRecord("synthetic", 5, sent=10.0, token_times=[10.2, 10.25, 10.4, 10.41, 11.0]),
        StreamRecord("synthetic", 1, sent=3.0, token_times=[3.05]),
    ]


def _close(got: Any, want: float) -> bool:
    return isinstance(got, int | float) and math.isfinite(got) and abs(got - want) <= 1e-6 * abs(want) + 1e-6


@checkpoint(
    "lab5.token_metrics",
    title="Your TTFT and inter-token latency match genai-perf's definitions on recorded timestamps",
    points=2,
    needs_server=False,
    hint="ttft = first token time - send time; itl = (last token time - first token time) / (tokens - 1), None for "
    "a single token; both in milliseconds.",
)
def token_metrics(ctx: Context) -> str:
    from tritonlab.labs.lab5 import RESULTS

    fn = ctx.value("token_latencies")
    if not isinstance(fn, SubmittedFunction):
        raise Fail(f"token_latencies must be a function, got {type(fn).__name__}")
    saved = _saved(ctx)
    recorded = [r for entry in saved.values() if isinstance(entry, dict)
                for r in _records(entry, RESULTS) if r.token_times and not r.error]  # fmt: skip
    if not recorded:
        raise Unattempted(f"{RESULTS} has no streamed requests yet: run the measurement cells first")
    cases = recorded[:24] + _synthetic_records()  # 24 recorded requests are plenty and keep it quick
    with Worker(fn) as worker:  # one worker process for every case
        for record in cases:
            got = _call_with_timeout(worker, record.sent, list(record.token_times))
            if not isinstance(got, dict) or not {"ttft_ms", "itl_ms"} <= set(got):
                raise Fail(f"token_latencies must return a dict with ttft_ms and itl_ms, got {got!r}")
            want_ttft, want_itl = record.ttft * 1e3, record.inter_token_latency
            first = [round(t, 3) for t in record.token_times[:5]]
            shown = f"sent {record.sent:.3f}, {len(record.token_times)} tokens at {first}"
            if not _close(got["ttft_ms"], want_ttft):
                raise Fail(f"ttft_ms {got['ttft_ms']!r} for {shown}: want {want_ttft:.6g} ms")
            if want_itl is None:
                if got["itl_ms"] is not None and not (isinstance(got["itl_ms"], float) and math.isnan(got["itl_ms"])):
                    raise Fail(f"itl_ms {got['itl_ms']!r} for a single-token answer ({shown}): there is no gap, "
                               "want None")  # fmt: skip
            elif not _close(got["itl_ms"], want_itl * 1e3):
                raise Fail(f"itl_ms {got['itl_ms']!r} for {shown}: want {want_itl * 1e3:.6g} ms "
                           "(the gaps after the first token, averaged)")  # fmt: skip
    return (
        f"TTFT and ITL right on {len(recorded[:24])} recorded requests and {len(cases) - len(recorded[:24])} edge cases"
    )


# ---------------------------------------------------------------------------------------------- batching


def _strategy_evidence(entry: dict[str, Any]) -> tuple[int, int, float]:
    """(admissions that joined a running batch, padded decode slots, server-side tokens/s) from the step log."""
    events = entry.get("events", [])
    admits = {e["id"]: e["t"] for e in events if e.get("event") == "admit"}
    finishes = {e["id"]: (e["t"], e["tokens"]) for e in events if e.get("event") == "finish"}
    joined = sum(
        any(admits[other] < t < finishes[other][0] for other in admits if other != rid and other in finishes)
        for rid, t in admits.items()
    )
    padded = sum(max(0, int(s.get("batch", 0)) - len(s.get("ids", []))) for s in entry.get("steps", []))
    tokens = sum(n for _, n in finishes.values())
    span = max((t for t, _ in finishes.values()), default=0.0) - min(admits.values(), default=0.0)
    return joined, padded, tokens / span if span > 0 else 0.0


@checkpoint(
    "lab5.batching",
    title="In-flight batching beats static batching on your measurement, and the server's own records agree",
    points=3,
    hint="THROUGHPUT[s] = all output tokens / (last token time - first send time) over the records of strategy s "
    "(genai-perf's output_token_throughput); SPEEDUP = THROUGHPUT['inflight'] / THROUGHPUT['static'].",
)
def batching(ctx: Context) -> str:
    from tritonlab.labs.lab5 import RESULTS

    try:
        return _batching(ctx)
    except (KeyError, TypeError, AttributeError, IndexError) as e:  # a results file measure_batching did not write
        raise Fail(f"{RESULTS} is not what measure_batching saves ({type(e).__name__}: {e}): run the measurement "
                   "cell again") from None  # fmt: skip


def _batching(ctx: Context) -> str:
    from tritonlab.engine.serving.client import llm_metrics
    from tritonlab.labs.lab5 import RESULTS, STRATEGIES

    throughput, speedup = ctx.value("throughput"), ctx.value("speedup")
    saved = _saved(ctx)
    missing = [s for s in STRATEGIES if s not in saved]
    if missing:
        raise Unattempted(f"{RESULTS} has no measurement for {missing}: run measure_batching for both strategies")
    info = ctx.require_server()
    metrics, evidence = {}, {}
    for strategy in STRATEGIES:
        entry = saved[strategy]
        if entry.get("server") != info.http_url:
            raise Fail(f"the {strategy} measurement was taken on {entry.get('server')}, not on the running server "
                       f"{info.http_url}: measure again")  # fmt: skip
        records = _records(entry, RESULTS)
        failed = [r.error for r in records if r.error]
        if failed or not records:
            raise Fail(f"{strategy}: {len(failed)} of {len(records)} requests failed ({failed[:1]}): measure again")
        before, after = entry["stats_before"]["ensemble"], entry["stats_after"]["ensemble"]
        if after["success"] - before["success"] != len(records) or after["fail"] != before["fail"]:
            raise Fail(f"{strategy}: Triton counted {after['success'] - before['success']} successful ensemble "
                       f"requests during the run, the client {len(records)}")  # fmt: skip
        finished = {e["id"]: e["tokens"] for e in entry.get("events", []) if e.get("event") == "finish"}
        disagree = [r.request_id for r in records if finished.get(r.request_id) != len(r.token_times)]
        if disagree:
            raise Fail(f"{strategy}: the server's step log and the client disagree on the tokens of {disagree[:3]}")
        metrics[strategy] = llm_metrics(records)
        evidence[strategy] = _strategy_evidence(entry)
    if saved["inflight"].get("requests") != saved["static"].get("requests"):
        raise Fail("the two strategies served different request lists: measure both with the same requests")
    if _ensemble_success(ctx) < saved["static"]["stats_after"]["ensemble"]["success"]:
        raise Fail(f"the running server has served fewer requests than {RESULTS} claims: measure again")
    joined, padded = evidence["inflight"][0], evidence["static"][1]
    if joined == 0 or evidence["inflight"][1] != 0:
        raise Fail("the server's step log shows no request joining a running batch in the 'inflight' run")
    if evidence["static"][0] != 0 or padded == 0:
        raise Fail("the server's step log of the 'static' run is not static batching (requests joined running "
                   "batches, or no finished sequence was padded)")  # fmt: skip
    if not isinstance(throughput, dict) or set(throughput) != set(STRATEGIES):
        raise Fail(f"THROUGHPUT must be a dict with keys {list(STRATEGIES)}, got {throughput!r}")
    for strategy in STRATEGIES:
        want = metrics[strategy]["output_token_throughput"]
        got = throughput[strategy]
        if not isinstance(got, int | float) or abs(got - want) > VALUE_TOLERANCE * want:
            raise Fail(f"THROUGHPUT[{strategy!r}] = {got!r}; the saved records give {want:.2f} output tokens/s "
                       "(all tokens / (last token - first send))")  # fmt: skip
    ratio = metrics["inflight"]["output_token_throughput"] / metrics["static"]["output_token_throughput"]
    if not isinstance(speedup, int | float) or abs(speedup - ratio) > VALUE_TOLERANCE * ratio:
        raise Fail(f"SPEEDUP = {speedup!r}; your THROUGHPUT values give {ratio:.3f}")
    kind = str(saved["inflight"].get("instance_kind", "KIND_CPU"))
    least = MIN_SPEEDUP.get(kind, MIN_SPEEDUP["KIND_CPU"])
    if ratio < least:
        raise Fail(f"in-flight batching gave {ratio:.2f}x static's tokens/s; expected at least {least}x on this "
                   f"workload ({kind}): was the machine busy? measure both again")  # fmt: skip
    ttft = {s: metrics[s]["time_to_first_token"]["avg"] for s in STRATEGIES}
    if ttft["static"] < MIN_TTFT_GAIN * ttft["inflight"]:
        raise Fail(f"mean time to first token: in-flight {ttft['inflight']:.1f} ms, static {ttft['static']:.1f} ms; "
                   f"requests joining at the next step wait far less (>= {MIN_TTFT_GAIN}x): measure again")  # fmt: skip
    server_ratio = evidence["inflight"][2] / evidence["static"][2] if evidence["static"][2] else 0.0
    if abs(server_ratio - ratio) > RATIO_AGREEMENT * ratio:
        raise Fail(f"the client measured {ratio:.2f}x, the server's step log {server_ratio:.2f}x: measure again")
    steps = {s: len(saved[s].get("steps", [])) for s in STRATEGIES}
    if steps["inflight"] > MAX_STEP_SHARE * steps["static"]:
        raise Fail(f"the server's step log shows {steps['inflight']} decode steps in-flight vs {steps['static']} "
                   "static for the same tokens; joining at every step needs clearly fewer: measure again")  # fmt: skip
    return (f"in-flight {ratio:.2f}x static output tokens/s (server's step log: {server_ratio:.2f}x), mean TTFT "
            f"{ttft['inflight']:.0f} vs {ttft['static']:.0f} ms, {steps['inflight']} vs {steps['static']} decode steps "
            f"for the same tokens; {joined} requests joined a running batch, static padded {padded} slots")  # fmt: skip
