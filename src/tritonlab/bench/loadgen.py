"""Our own load generator, for machines without perf_analyzer (and to see how one works).

Speed comes from doing almost nothing per request in Python: the request is built and serialised once
(a ``ModelInferRequest`` with binary ``raw_input_contents`` for gRPC, a binary-tensor body for HTTP) and the
same bytes are sent every time; responses are not parsed (gRPC's status and HTTP's 200 say whether it
worked); a request costs two clock reads and two list appends. Statistics are computed once, with numpy,
after the run. For gRPC, two grpcio-specific measures (see ``prefer_classic_grpc_client`` and
``GrpcTransport._direct_calls_available``) cut the client's CPU per request by about a third.

Two modes, like perf_analyzer:
- fixed concurrency (closed loop): N workers, each sends its next request when the previous one returns;
- fixed request rate (open loop): requests leave on a schedule (one every 1/rate s), whether or not earlier
  ones returned, up to ``max_outstanding`` in flight.

A warm-up (not counted) precedes the measurement window. The model's server-side counters are read when the
window opens and when it closes, and the window is defined by those reads (their midpoints), so the
requests counted here and the server's Δ success_count describe the same span of time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import importlib.metadata
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import numpy as np

from tritonlab.bench.inputs import InputSet, tensor_bytes
from tritonlab.bench.stats import StatsReader, error_text, host_port
from tritonlab.bench.table import BenchRow
from tritonlab.errors import TritonLabError

PROTOCOLS = ("grpc", "http")
_PROGRESS_TICK_S = 0.25


class RequestFailed(Exception):
    """The server (or the connection) refused one request; ``message`` is the server's own text."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable  # no server answered at all (refused connection, nothing listening)


# ---------------------------------------------------------------------------------------------- transports
# The grpcio line the two gRPC speed-ups below (classic TCP client, direct Cython calls) were written and
# measured against; with another grpcio the generator takes grpcio's ordinary public path.
_TUNED_GRPCIO = "1.85."


def prefer_classic_grpc_client() -> bool:
    """Start grpcio with its classic TCP client instead of the EventEngine one, if grpc is not loaded yet.

    Measured on a 2-core machine (grpcio 1.85): the EventEngine client hands every response across two
    threads (4-5 futex wake-ups per request, against ~0.1 classic) and costs 15-25% more CPU per request;
    perf_analyzer's gRPC makes no such hops. grpcio reads GRPC_EXPERIMENTS once, when it is imported, so the
    variable is set only for that import and removed again: servers and perf_analyzer started later do not
    inherit it. A GRPC_EXPERIMENTS the user set is left alone. Returns True if it took effect.
    """
    if "grpc" in sys.modules or "GRPC_EXPERIMENTS" in os.environ:
        return False
    try:
        if not importlib.metadata.version("grpcio").startswith(_TUNED_GRPCIO):
            return False  # another grpcio may not know the experiment (and would log an error)
    except importlib.metadata.PackageNotFoundError:
        return False
    os.environ["GRPC_EXPERIMENTS"] = "-event_engine_client"
    try:
        import grpc.aio  # noqa: F401  (initialises grpc core, which reads the variable)
    finally:
        del os.environ["GRPC_EXPERIMENTS"]
    return True


class GrpcTransport:
    """ModelInfer over one grpc.aio channel, sending the same pre-serialised request bytes every time."""

    def __init__(self, address: str, model: str, inputs: InputSet, batch_size: int):
        prefer_classic_grpc_client()
        from tritonclient.grpc import service_pb2

        host, port = host_port(address)
        self.address = f"{host}:{port}"
        request = service_pb2.ModelInferRequest(model_name=model)
        for name, array in inputs.batch(batch_size).items():
            tensor = request.inputs.add()
            tensor.name, tensor.datatype = name, inputs.datatypes[name]
            tensor.shape.extend(array.shape)
            request.raw_input_contents.append(tensor_bytes(array, inputs.datatypes[name]))
        self.payload = request.SerializeToString()
        method = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name["ModelInfer"]
        self.method = f"/{method.containing_service.full_name}/{method.name}"

    async def open(self) -> None:
        import grpc

        self._grpc = grpc
        # Retries off: the retry machinery costs CPU on every call, and a benchmark must see failures anyway.
        options = [("grpc.enable_retries", 0), ("grpc.max_send_message_length", -1),
                   ("grpc.max_receive_message_length", -1)]  # fmt: skip
        self._channel = grpc.aio.insecure_channel(self.address, options=options)
        # No serializer / deserializer: bytes go out as they are and responses stay unparsed bytes.
        self._infer = self._channel.unary_unary(
            self.method, request_serializer=None, response_deserializer=None, _registered_method=True
        )
        self.send = self._send_direct if self._direct_calls_available() else self._send_public  # type: ignore[method-assign]

    def _direct_calls_available(self) -> bool:
        # grpc.aio wraps every call in a Python Call object and an asyncio Task of its own; on a 2-core
        # machine that wrapping is a fifth of the client's CPU per request. The Cython call underneath
        # (the one the wrapper awaits) does the same RPC without it. It is not public API, so it is used
        # only where it has the shape this code was written against (grpcio 1.85); else the public path.
        if not self._grpc.__version__.startswith(_TUNED_GRPCIO):
            return False
        cython_channel = getattr(self._channel, "_channel", None)
        handle = getattr(self._infer, "_registered_call_handle", None)
        if cython_channel is None or handle is None or not hasattr(cython_channel, "call"):
            return False
        self._cython_channel, self._handle, self._method_bytes = cython_channel, handle, self.method.encode()
        return True

    async def send(self) -> None:
        raise RuntimeError("open() the transport first")

    async def _send_public(self) -> None:
        # No per-call deadline: it costs a timer per request; the window's end cancels whatever is in flight.
        try:
            await self._infer(self.payload)
        except self._grpc.aio.AioRpcError as e:
            unreachable = e.code() == self._grpc.StatusCode.UNAVAILABLE
            raise RequestFailed(e.details() or str(e.code()), unreachable) from None

    async def _send_direct(self) -> None:
        call = self._cython_channel.call(self._method_bytes, None, None, None, self._handle)
        try:
            await call.unary_unary(self.payload, (), None)
        except BaseException:  # cancelled at the window's end: tell the server, as grpc.aio's own wrapper does
            if not call.done():
                call.cancel("cancelled by the benchmark")
            raise
        if not call.is_ok():
            status = call._status
            unreachable = status.code() == self._grpc.StatusCode.UNAVAILABLE.value[0]
            raise RequestFailed(status.details() or f"gRPC status {status.code()}", unreachable)

    async def close(self) -> None:
        await self._channel.close()


class HttpTransport:
    """POST /v2/models/M/infer with one prebuilt binary-tensor request, over keep-alive asyncio connections.

    The whole request (request line, headers, JSON header, tensor bytes) is built once, by the v2 protocol's
    binary tensor extension; each send writes those bytes and reads one response (status line, headers,
    Content-Length body) on a connection of its own from a small pool. aiohttp cost 300-800 µs of client CPU
    per request on a 2-core machine (0.67-0.80 of perf_analyzer's throughput); this costs about a tenth of it.
    """

    def __init__(self, url: str, model: str, inputs: InputSet, batch_size: int):
        self.host, self.port = host_port(url)
        self.address = f"http://{self.host}:{self.port}"
        path = f"/v2/models/{quote(model, safe='')}/infer"
        arrays = inputs.batch(batch_size)
        tensors = [tensor_bytes(array, inputs.datatypes[name]) for name, array in arrays.items()]
        header = {
            "inputs": [
                {"name": name, "shape": list(array.shape), "datatype": inputs.datatypes[name],
                 "parameters": {"binary_data_size": len(raw)}}
                for (name, array), raw in zip(arrays.items(), tensors, strict=True)
            ],
        }  # fmt: skip
        if inputs.outputs:
            header["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in inputs.outputs]
        json_header = json.dumps(header, separators=(",", ":")).encode()
        body = json_header + b"".join(tensors)
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(json_header)}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def open(self) -> None:
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle:
            return self._idle.pop()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as e:
            raise RequestFailed(f"cannot connect to {self.address}: {e.strerror or e}", unreachable=True) from None
        self._all.append(writer)
        return reader, writer

    async def send(self) -> None:
        reader, writer = await self._connection()
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = _content_length(head)
            body = await reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            writer.close()
            raise RequestFailed(f"{type(e).__name__}: {e}") from None
        self._idle.append((reader, writer))
        if status != 200:
            raise RequestFailed(error_text(body))

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
        for writer in self._all:
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        self._all.clear()
        self._idle.clear()


def _content_length(head: bytes) -> int:
    start = head.lower().find(b"\r\ncontent-length:")
    if start < 0:
        if b"chunked" in head.lower():
            raise ValueError("the server answered with a chunked body, which this client does not read")
        return 0
    start += len(b"\r\ncontent-length:")
    return int(head[start : head.index(b"\r\n", start)])


Transport = GrpcTransport | HttpTransport


# ---------------------------------------------------------------------------------------------- one run
class _Run:
    """Timestamps of one run. Workers only append; everything else happens after the run."""

    def __init__(self) -> None:
        self.running = True
        self.done_ns: list[int] = []  # completion time of each successful request
        self.latency_ns: list[int] = []
        self.error_ns: list[int] = []
        self.first_error: str | None = None
        self.next_slot = 0  # open loop: the next scheduled send

    def failed(self, error: RequestFailed) -> None:
        self.error_ns.append(time.perf_counter_ns())
        if self.first_error is None:
            self.first_error = error.message


async def _closed_loop_worker(send: Callable[[], Awaitable[None]], run: _Run) -> None:
    clock, done, latency = time.perf_counter_ns, run.done_ns.append, run.latency_ns.append
    while run.running:
        start = clock()
        try:
            await send()
        except RequestFailed as e:
            run.failed(e)
            continue
        end = clock()
        done(end)
        latency(end - start)


async def _open_loop_worker(send: Callable[[], Awaitable[None]], run: _Run, start_ns: int, interval_ns: float) -> None:
    # Workers take turns on one schedule: slot k leaves at start + k/rate. A worker busy with a slow request
    # leaves the next slots to the others; only when all are busy (max_outstanding) do sends fall behind.
    # Latency counts from when the request actually left, as perf_analyzer's does.
    clock, done, latency = time.perf_counter_ns, run.done_ns.append, run.latency_ns.append
    while run.running:
        slot = run.next_slot
        run.next_slot += 1
        wait_ns = start_ns + int(slot * interval_ns) - clock()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
            if not run.running:
                return
        sent = clock()
        try:
            await send()
        except RequestFailed as e:
            run.failed(e)
            continue
        end = clock()
        done(end)
        latency(end - sent)


async def _read_stats(reader: StatsReader | None) -> tuple[int, dict[str, Any] | None, float]:
    """(the time the snapshot stands for, the snapshot, how long the read took in s): the midpoint of the read,
    taken in a thread. Requests finishing during the read may fall on either side of the edge."""
    if reader is None:
        return time.perf_counter_ns(), None, 0.0
    before = time.perf_counter_ns()
    stats = await asyncio.get_running_loop().run_in_executor(None, reader)
    after = time.perf_counter_ns()
    return (before + after) // 2, stats, (after - before) / 1e9


async def _sleep_until(deadline_ns: int) -> None:
    delay = deadline_ns - time.perf_counter_ns()
    if delay > 0:
        await asyncio.sleep(delay / 1e9)


def progress_visible(progress: bool) -> bool:
    """Show bars only if asked and someone can see them: in a notebook or on a terminal, not in logs or pipes."""
    from tqdm.autonotebook import tqdm as notebook_tqdm
    from tqdm.std import tqdm as std_tqdm

    return progress and (notebook_tqdm is not std_tqdm or sys.stderr.isatty())


def _progress_bar(enabled: bool, total_s: float, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=round(total_s, 2), desc=desc, unit="s", disable=not progress_visible(enabled), leave=False,
                bar_format="{desc}: {bar} {n:.1f}/{total:.1f} s{postfix}")  # fmt: skip


async def _show_progress(run: _Run, bar: Any, start_ns: int, total_s: float) -> None:
    seen, last = 0, start_ns
    while run.running:
        await asyncio.sleep(_PROGRESS_TICK_S)
        now, count = time.perf_counter_ns(), len(run.done_ns)
        bar.n = min(total_s, (now - start_ns) / 1e9)
        bar.set_postfix_str(f"{(count - seen) / max((now - last) / 1e9, 1e-9):,.0f} req/s", refresh=False)
        bar.refresh()
        seen, last = count, now


async def _measure(
    transport: Transport,
    *,
    concurrency: int | None,
    request_rate: float | None,
    max_outstanding: int,
    duration_s: float,
    warmup_s: float,
    stats_reader: StatsReader | None,
    progress: bool,
    desc: str,
    probe_timeout_s: float,
) -> tuple[_Run, int, int, dict[str, Any] | None]:
    await transport.open()
    try:
        try:  # one request first: a wrong input or model fails here, with Triton's message, not N times
            await asyncio.wait_for(transport.send(), probe_timeout_s)
        except RequestFailed as e:
            if e.unreachable:
                raise TritonLabError(
                    f"no Triton server answers at {transport.address}: {e.message}",
                    fix="check that the server runs (`tritonlab status`) and the URL and port",
                ) from None
            raise TritonLabError(
                f"Triton rejected the benchmark's request: {e.message}",
                fix="check the model name and the inputs (names, datatypes, shapes) against the model's "
                "configuration (server.model_config(MODEL)), and that the server runs",
            ) from None
        except TimeoutError:
            raise TritonLabError(
                f"no answer to a first request within {probe_timeout_s:g} s",
                fix="check that the server runs and the model is loaded; raise timeout_s for a slow model",
            ) from None
        run = _Run()
        start = time.perf_counter_ns()
        if concurrency is not None:
            workers = [_closed_loop_worker(transport.send, run) for _ in range(concurrency)]
        else:
            interval_ns = 1e9 / float(request_rate or 1.0)
            workers = [_open_loop_worker(transport.send, run, start, interval_ns) for _ in range(max_outstanding)]
        tasks = [asyncio.ensure_future(w) for w in workers]
        bar = _progress_bar(progress, warmup_s + duration_s, desc)
        ticker = asyncio.ensure_future(_show_progress(run, bar, start, warmup_s + duration_s))
        try:
            await _sleep_until(start + int(warmup_s * 1e9))
            window_start, before, read_before_s = await _read_stats(stats_reader)
            await _sleep_until(window_start + int(duration_s * 1e9))
            window_end, after, read_after_s = await _read_stats(stats_reader)
        finally:
            run.running = False
            # Requests still in flight finish after the window: not counted, so cancel rather than wait.
            for task in [*tasks, ticker]:
                task.cancel()
            results = await asyncio.gather(*tasks, ticker, return_exceptions=True)
            bar.close()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        server_stats = None
        if before is not None and after is not None:
            server_stats = {
                "before": before,
                "after": after,
                "read_s": [round(read_before_s, 6), round(read_after_s, 6)],
            }
        return run, window_start, window_end, server_stats
    finally:
        await transport.close()


def _run_coroutine(coroutine: Awaitable[Any]) -> Any:
    """asyncio.run, also from inside a running event loop (a Jupyter cell): then in a thread of its own."""
    # Objects that exist now will not die during the run: freezing them keeps a full garbage collection
    # (which walks every object of numpy, grpc and a notebook) from pausing the load in the middle of the window.
    gc.collect()
    gc.freeze()
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)  # type: ignore[arg-type]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()
    finally:
        gc.unfreeze()


def run_loadgen(
    url: str,
    model: str,
    inputs: InputSet,
    *,
    protocol: str = "grpc",
    concurrency: int | None = None,
    request_rate: float | None = None,
    duration_s: float = 3.0,
    warmup_s: float = 1.0,
    batch_size: int = 1,
    stats_reader: StatsReader | None = None,
    progress: bool = True,
    label: str = "",
    max_outstanding: int | None = None,
    timeout_s: float = 60.0,
) -> BenchRow:
    """Load ``model`` at one concurrency (closed loop) or one request rate (open loop); one ``BenchRow``.

    ``url`` is the endpoint of ``protocol``: the gRPC address (``grpc://host:port`` or ``host:port``) or the
    HTTP URL. ``stats_reader`` (see ``stats.model_stats_reader``) snapshots server counters at the window edges.
    """
    if protocol not in PROTOCOLS:
        raise TritonLabError(f"protocol={protocol!r} is not supported", fix="use 'grpc' or 'http'")
    if (concurrency is None) == (request_rate is None):
        raise TritonLabError("give exactly one of concurrency= and request_rate=", fix="e.g. concurrency=8")
    if concurrency is not None and concurrency < 1:
        raise TritonLabError(f"concurrency={concurrency} must be at least 1", fix="use concurrency=1 or more")
    if request_rate is not None and not request_rate > 0:
        raise TritonLabError(f"request_rate={request_rate} must be > 0", fix="give requests per second, e.g. 200")
    if not duration_s > 0 or warmup_s < 0:
        raise TritonLabError("duration_s must be > 0 and warmup_s >= 0", fix="e.g. duration_s=3, warmup_s=1")
    if max_outstanding is None:
        # Enough to keep a schedule while requests take up to ~0.5 s each, without thousands of idle tasks.
        max_outstanding = max(16, min(1024, math.ceil((request_rate or 0) * 0.5)))
    transport_cls = GrpcTransport if protocol == "grpc" else HttpTransport
    transport = transport_cls(url, model, inputs, batch_size)
    load = f"c={concurrency}" if concurrency is not None else f"r={request_rate:g}/s"
    run, window_start, window_end, server_stats = _run_coroutine(
        _measure(
            transport, concurrency=concurrency, request_rate=request_rate, max_outstanding=max_outstanding,
            duration_s=duration_s, warmup_s=warmup_s, stats_reader=stats_reader, progress=progress,
            desc=f"{label or model} {protocol} {load}", probe_timeout_s=timeout_s,
        )
    )  # fmt: skip
    done = np.asarray(run.done_ns, dtype=np.int64)
    in_window = (done >= window_start) & (done < window_end)
    latencies_ms = np.asarray(run.latency_ns, dtype=np.int64)[in_window] / 1e6
    errors = np.asarray(run.error_ns, dtype=np.int64)
    error_count = int(((errors >= window_start) & (errors < window_end)).sum())
    if latencies_ms.size == 0:
        if run.first_error is not None:
            raise TritonLabError(
                f"every request to model {model!r} failed: {run.first_error}",
                fix="read Triton's message above; `tritonlab logs` shows the server's side",
            )
        raise TritonLabError(
            f"no request to model {model!r} completed within the {duration_s:g} s window",
            fix="use a longer duration_s (each request may take longer than the window)",
        )
    window_s = (window_end - window_start) / 1e9
    p50, p90, p95, p99 = (float(v) for v in np.percentile(latencies_ms, [50, 90, 95, 99]))
    return BenchRow(
        tool="builtin", protocol=protocol, model=model, concurrency=concurrency, request_rate=request_rate,
        throughput=latencies_ms.size * batch_size / window_s, p50_ms=p50, p90_ms=p90, p95_ms=p95, p99_ms=p99,
        avg_ms=float(latencies_ms.mean()), requests=int(latencies_ms.size), errors=error_count, window_s=window_s,
        label=label, batch_size=batch_size, server_stats=server_stats,
        first_error=run.first_error if error_count else None,
    )  # fmt: skip
