"""``run_bench``: measure a model at several load levels with perf_analyzer or the builtin generator.

from tritonlab.bench import run_bench
table = run_bench(server, "add_sub", concurrency="1:32:x2", label="baseline", save_to="results.json")
print(table)
table.best_under_slo(p99_ms=10)
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonlab.bench.inputs import InputSet
from tritonlab.bench.loadgen import PROTOCOLS, prefer_classic_grpc_client, progress_visible, run_loadgen
from tritonlab.bench.perf_analyzer import find_perf_analyzer, run_perf_analyzer
from tritonlab.bench.stats import host_port, model_stats_reader
from tritonlab.bench.table import BenchRow, BenchTable
from tritonlab.errors import EnvironmentProblem, TritonLabError

if TYPE_CHECKING:  # pragma: no cover
    from tritonlab.server.base import Server

TOOLS = ("auto", "builtin", "perf_analyzer")
_RANGE = re.compile(r"^(\d+):(\d+)(?::(x?)(\d+))?$")
_CONCURRENCY_FIX = 'use "8", "1,4,16", "1:16:4" (1,5,9,13: start, end, step, as perf_analyzer) or "1:32:x2" (doubling)'


def parse_concurrency(spec: str | int | Sequence[int]) -> list[int]:
    """Concurrency levels from "1:32:x2" (→ 1,2,4,...,32), "1:16:4" (→ 1,5,9,13), "8", "1,4,16", 8 or [1, 4]."""
    if isinstance(spec, int):
        levels = [spec]
    elif isinstance(spec, str):
        text = spec.replace(" ", "")
        if match := _RANGE.match(text):
            start, end, multiply, step = int(match[1]), int(match[2]), match[3] == "x", int(match[4] or 1)
            if start < 1 or end < start or step < 1 or (multiply and step < 2):
                raise TritonLabError(f"concurrency range {spec!r} is empty or never ends", fix=_CONCURRENCY_FIX)
            levels, level = [], start
            while level <= end:
                levels.append(level)
                level = level * step if multiply else level + step
        elif re.fullmatch(r"\d+(,\d+)*", text):
            levels = [int(part) for part in text.split(",")]
        else:
            raise TritonLabError(f"cannot read concurrency {spec!r}", fix=_CONCURRENCY_FIX)
    else:
        levels = [int(level) for level in spec]
    if not levels or any(level < 1 for level in levels):
        raise TritonLabError(f"concurrency {spec!r}: every level must be at least 1", fix=_CONCURRENCY_FIX)
    return levels


def resolve_endpoints(
    target: Server | str, grpc_url: str | None = None, *, need_grpc: bool = True
) -> tuple[str, str | None]:
    """(HTTP URL, gRPC host:port) of a ``Server`` or of a server given by its HTTP URL.

    For a URL the gRPC port comes from ``grpc_url``, else from tritonlab's registry of servers it started,
    else Triton's default layout (HTTP port + 1) if a gRPC server answers there.
    """
    if not isinstance(target, str):
        return target.http_url, target.grpc_address
    host, port = host_port(target)
    http_url = f"http://{host}:{port}"
    if grpc_url:
        grpc_host, grpc_port = host_port(grpc_url)
        return http_url, f"{grpc_host}:{grpc_port}"
    from tritonlab.server import registry

    for record in registry.records():
        if host_port(record.http_url) == (host, port):
            grpc_host, grpc_port = host_port(record.grpc_url)
            return http_url, f"{grpc_host}:{grpc_port}"
    if not need_grpc:
        return http_url, None
    guess = f"{host}:{port + 1}"
    if _grpc_answers(guess):
        return http_url, guess
    raise TritonLabError(
        f"cannot tell the gRPC address of the server at {http_url} (nothing answers gRPC on {guess})",
        fix="pass grpc_url='grpc://HOST:PORT' (CLI: --grpc-url), or use protocol='http'",
    )


def _grpc_answers(address: str) -> bool:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive(service_pb2.ServerLiveRequest(), timeout=2)
            return True
        except grpc.RpcError:
            return False


def choose_tool(tool: str) -> str:
    """ "auto" → perf_analyzer when installed, else the builtin generator."""
    if tool not in TOOLS:
        raise TritonLabError(f"tool={tool!r} is not a benchmark tool", fix=f"use one of: {', '.join(TOOLS)}")
    if tool != "auto":
        if tool == "perf_analyzer":
            find_perf_analyzer()  # EnvironmentProblem with the fix if it is missing
        return tool
    try:
        find_perf_analyzer()
        return "perf_analyzer"
    except EnvironmentProblem:
        return "builtin"


def append_results(path: str | Path, rows: BenchTable | Sequence[BenchRow]) -> BenchTable:
    """Add rows to a results file (created if missing) and return everything it now holds."""
    path = Path(path)
    table = BenchTable.load(path) if path.exists() else BenchTable()
    table.extend(rows)
    table.save(path)
    return table


def run_bench(
    target: Server | str,
    model: str,
    *,
    tool: str = "auto",
    concurrency: str | int | Sequence[int] = "1:32:x2",
    request_rate: float | Sequence[float] | None = None,
    protocol: str = "grpc",
    duration_s: float = 3.0,
    warmup_s: float = 1.0,
    inputs: InputSet | Mapping[str, Any] | None = None,
    shapes: Mapping[str, list[int]] | None = None,
    batch_size: int = 1,
    label: str = "",
    config: dict[str, Any] | None = None,
    progress: bool = True,
    save_to: str | Path | None = None,
    grpc_url: str | None = None,
    stability_percentage: float = 10.0,
) -> BenchTable:
    """Measure ``model`` at each concurrency (or each ``request_rate``, requests/s); one row per level.

    ``target`` is a ``Server`` or the server's HTTP URL (then ``grpc_url`` if tritonlab did not start it).
    ``inputs`` is an ``InputSet`` or {name: array} (one sample, no batch dimension if the model batches);
    by default inputs are generated from the model's configuration (``shapes`` fills -1 dims). ``tool="auto"``
    uses perf_analyzer when installed (its measurement window = ``duration_s``; it has its own stabilisation
    instead of ``warmup_s``, controlled by ``stability_percentage``), else the builtin generator.
    With ``save_to``, rows are appended to that JSON results file. ``config`` (the model configuration
    measured, e.g. a lab 3 Variant as a dict) is stored on every row.
    """
    if protocol not in PROTOCOLS:
        raise TritonLabError(f"protocol={protocol!r} is not supported", fix="use 'grpc' or 'http'")
    if request_rate is not None:
        rates = [float(request_rate)] if isinstance(request_rate, int | float) else [float(r) for r in request_rate]
        if not rates or any(not r > 0 for r in rates):
            raise TritonLabError(f"request_rate {request_rate!r}: rates must be > 0", fix="e.g. request_rate=200")
        levels: list[tuple[int | None, float | None]] = [(None, rate) for rate in rates]
    else:
        levels = [(level, None) for level in parse_concurrency(concurrency)]
    chosen = choose_tool(tool)
    if chosen == "builtin" and protocol == "grpc":
        prefer_classic_grpc_client()  # before anything below imports grpc
    if save_to is not None and Path(save_to).exists():
        BenchTable.load(save_to)  # a file we could not append to fails now, not after the whole run
    http_url, grpc_address = resolve_endpoints(target, grpc_url, need_grpc=protocol == "grpc")
    url = (grpc_address or "") if protocol == "grpc" else http_url
    if not isinstance(inputs, InputSet):
        inputs = InputSet.from_model(http_url, model, shapes=shapes, arrays=inputs)
    inputs.batch(batch_size)  # a batch size the model cannot take fails here, before any load
    stats_reader = model_stats_reader(http_url, model)

    rows: list[BenchRow] = []
    try:
        if chosen == "perf_analyzer":
            with tempfile.TemporaryDirectory(prefix="tritonlab-bench-") as tmp:
                input_data = inputs.write_perf_analyzer_json(Path(tmp) / "inputs.json")  # the builtin's exact values
                for concurrency_level, rate in _with_progress(levels, progress, f"perf_analyzer {label or model}"):
                    rows += run_perf_analyzer(
                        url, model, protocol=protocol, concurrency=[concurrency_level or 1],
                        request_rate=[rate] if rate is not None else None,
                        measurement_interval_ms=int(duration_s * 1000), input_data=input_data, batch_size=batch_size,
                        stats_reader=stats_reader, stability_percentage=stability_percentage, label=label,
                    )  # fmt: skip
        else:
            for concurrency_level, rate in levels:
                rows.append(
                    run_loadgen(
                        url, model, inputs, protocol=protocol, concurrency=concurrency_level, request_rate=rate,
                        duration_s=duration_s, warmup_s=warmup_s, batch_size=batch_size, stats_reader=stats_reader,
                        progress=progress, label=label,
                    )
                )  # fmt: skip
    finally:
        for row in rows:
            row.config = config
        if save_to is not None and rows:  # levels measured before a failure are kept, too
            append_results(save_to, rows)
    return BenchTable(rows)


def _with_progress(levels: list[Any], progress: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(levels, desc=desc, unit="level", disable=not progress_visible(progress), leave=False)
