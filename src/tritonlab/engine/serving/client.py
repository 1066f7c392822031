"""Phase 4's client: streaming requests that record when every token arrived, and genai-perf's metrics from them.

    records = stream_load(server.grpc_url, [("tell me a story", 64)] * 32, concurrency=16)
    summary = llm_metrics(records)           # time_to_first_token, inter_token_latency, ... (ms, tokens/s)

Each request is its own gRPC bidirectional stream (``ModelStreamInfer``) asking for Triton's empty final response,
so the client knows a stream is done even when the last token came with the final flag. Metric definitions follow
genai-perf (its ``llm_metrics``): per request, time to first token = first response - send; request latency =
last response - send; inter-token latency = (request latency - TTFT) / (output tokens - 1); over the run, output
token throughput = all output tokens / (last response - first send) and request throughput = requests / the same
span. Output tokens are counted as streamed responses that carry a token (genai-perf re-tokenizes the text; with
this engine's one-token-per-response stream the two agree).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tritonlab.errors import TritonLabError

ENSEMBLE = "ensemble"


@dataclass
class StreamRecord:
    """One streamed request: when it was sent, when each token arrived (``time.perf_counter`` seconds)."""

    prompt: str
    max_tokens: int
    request_id: str = ""
    sent: float = 0.0
    token_times: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.sent

    @property
    def latency(self) -> float:
        return self.token_times[-1] - self.sent

    @property
    def inter_token_latency(self) -> float | None:
        n = len(self.token_times)
        return (self.latency - self.ttft) / (n - 1) if n > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _request(model: str, prompt: str, max_tokens: int, request_id: str, ignore_eos: bool) -> Any:
    from tritonclient.grpc import InferInput
    from tritonclient.grpc._utils import _get_inference_request

    text = InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt.encode("utf-8")], dtype=np.object_))
    tokens = InferInput("max_tokens", [1], "INT32")
    tokens.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    eos = InferInput("ignore_eos", [1], "BOOL")
    eos.set_data_from_numpy(np.array([ignore_eos], dtype=bool))
    request = _get_inference_request(
        model_name=model, inputs=[text, tokens, eos], model_version="", request_id=request_id, outputs=None,
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None,
    )  # fmt: skip
    # Ask for the empty response that marks the end of the stream (the sync client's enable_empty_final_response).
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


async def _stream_one(stub: Any, model: str, record: StreamRecord, ignore_eos: bool, timeout: float) -> None:
    from tritonclient.grpc import InferResult

    request = _request(model, record.prompt, record.max_tokens, record.request_id, ignore_eos)

    async def requests() -> Any:
        yield request

    record.sent = time.perf_counter()
    call = stub.ModelStreamInfer(requests(), timeout=timeout)
    try:
        async for response in call:
            now = time.perf_counter()
            if response.error_message:
                record.error = response.error_message
                break
            result = response.infer_response
            if result.outputs:
                out = InferResult(result)
                record.token_times.append(now)
                text = out.as_numpy("text_output").reshape(-1)[0]
                record.texts.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
                record.token_ids.extend(int(t) for t in out.as_numpy("output_ids").reshape(-1))
            if result.parameters["triton_final_response"].bool_param:
                break
    finally:
        call.cancel()


async def _stream_all(
    grpc_url: str, records: list[StreamRecord], concurrency: int, model: str, ignore_eos: bool, timeout: float
) -> None:
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    queue: asyncio.Queue[StreamRecord] = asyncio.Queue()
    for record in records:
        queue.put_nowait(record)
    address = grpc_url.split("://", 1)[-1]  # server.grpc_url or server.grpc_address
    async with grpc.aio.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        async def worker() -> None:
            # Closed loop, like genai-perf's --concurrency: each worker sends its next request when one ends.
            while not queue.empty():
                record = queue.get_nowait()
                try:
                    await _stream_one(stub, model, record, ignore_eos, timeout)
                except Exception as exc:  # a broken stream is a failed request, not a crashed benchmark
                    record.error = record.error or f"{type(exc).__name__}: {exc}"

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))


def stream_load(
    grpc_url: str,
    requests: Sequence[tuple[str, int]],
    *,
    concurrency: int = 1,
    model: str = ENSEMBLE,
    ignore_eos: bool = True,
    timeout: float = 300.0,
) -> list[StreamRecord]:
    """Send ``(prompt, max_tokens)`` requests with ``concurrency`` streams open at a time; records in input order."""
    # Unique ids across calls: the server's step log names requests by them.
    batch = uuid.uuid4().hex[:8]
    records = [StreamRecord(p, n, request_id=f"{batch}-{i}") for i, (p, n) in enumerate(requests)]
    _run(_stream_all(grpc_url, records, concurrency, model, ignore_eos, timeout))
    return records


def stream_generate(
    grpc_url: str, prompt: str, max_tokens: int = 16, *, model: str = ENSEMBLE, ignore_eos: bool = True
) -> StreamRecord:
    """One streamed request; raises TritonLabError with the server's message if it fails (e.g. a build limit)."""
    record = stream_load(grpc_url, [(prompt, max_tokens)], model=model, ignore_eos=ignore_eos)[0]
    if record.error:
        raise TritonLabError(f"the server refused the request: {record.error}", fix=_fix_for(record.error))
    return record


def _fix_for(message: str) -> str:
    if "max_input_len" in message or "max_seq_len" in message:
        return "shorten the prompt / lower max_tokens, or build the engine again with larger limits"
    return "read the server's message above (server.logs() has the whole log)"


def _run(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Inside Jupyter a loop is already running: run ours on a helper thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def generate_stream_http(
    http_url: str, prompt: str, max_tokens: int = 16, *, model: str = ENSEMBLE, ignore_eos: bool = True
) -> list[dict[str, Any]]:
    """``POST /v2/models/M/generate_stream``: the server-sent events, decoded (one dict per token, or an error)."""
    body = json.dumps({"text_input": prompt, "max_tokens": max_tokens, "ignore_eos": ignore_eos}).encode()
    url = f"{http_url.rstrip('/')}/v2/models/{model}/generate_stream"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return [_event(raw) for raw in response if raw.strip().startswith(b"data:")]
    except urllib.error.HTTPError as exc:  # an error before the first token: Triton answers 400 with the message
        body = exc.read()
        lines = [raw for raw in body.splitlines() if raw.strip().startswith(b"data:")]
        if lines:
            return [_event(raw) for raw in lines]
        try:
            return [json.loads(body)]
        except ValueError:
            return [{"error": body.decode("utf-8", errors="replace") or str(exc)}]


def _event(raw: bytes) -> dict[str, Any]:
    return json.loads(raw.strip()[len(b"data:") :])


# ---------------------------------------------------------------------------------------------- metrics


def _stats(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64) * scale
    return {
        "avg": float(arr.mean()), "min": float(arr.min()), "max": float(arr.max()),
        "p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)), "std": float(arr.std()),
    }  # fmt: skip


def llm_metrics(records: Sequence[StreamRecord]) -> dict[str, Any]:
    """genai-perf's LLM metrics over completed requests: latencies in ms, throughputs per second."""
    done = [r for r in records if not r.error and r.token_times]
    if not done:
        raise TritonLabError("no request completed: nothing to measure", fix="check the server log and the errors")
    span = max(r.token_times[-1] for r in done) - min(r.sent for r in done)
    tokens = sum(len(r.token_times) for r in done)
    itl = [x for r in done if (x := r.inter_token_latency) is not None]
    return {
        "time_to_first_token": _stats([r.ttft for r in done], 1e3),
        "inter_token_latency": _stats(itl, 1e3),
        "request_latency": _stats([r.latency for r in done], 1e3),
        "output_sequence_length": _stats([len(r.token_times) for r in done]),
        "output_token_throughput": tokens / span,
        "request_throughput": len(done) / span,
        "requests": len(done),
        "failed": len(records) - len(done),
        "duration_s": span,
        # Little's law: requests in flight on average over the span; below the concurrency asked for, part of the run
        # was ramp-up or the drain after the last request was sent, not the steady state it is meant to measure
        "mean_in_flight": sum(r.latency for r in done) / span,
    }
