"""Run NVIDIA's perf_analyzer and turn its CSV report into ``BenchRow``s.

perf_analyzer runs once per load level: its ``--concurrency-range start:end:step`` only steps additively,
and one run per level lets us read the server's counters around each level.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tritonlab.bench.stats import StatsReader, host_port
from tritonlab.bench.table import BenchRow
from tritonlab.errors import EnvironmentProblem, TritonLabError

# CSV latency columns (microseconds) and the BenchRow fields they fill
_LATENCY_COLUMNS = {"p50 latency": "p50_ms", "p90 latency": "p90_ms", "p95 latency": "p95_ms",
                    "p99 latency": "p99_ms", "Avg latency": "avg_ms"}  # fmt: skip
_ERROR_LINE = re.compile(r"(?i)(^error|error:|failed|unable|invalid|expected|unknown|not found|exception)")


def find_perf_analyzer() -> Path:
    """The perf_analyzer binary: the one `make setup` puts next to this Python, else the first on PATH."""
    beside = Path(sys.executable).parent / "perf_analyzer"
    if beside.is_file():
        return beside
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    raise EnvironmentProblem(
        "perf_analyzer is not installed in this environment",
        fix="run `make setup` (it installs tritonclient 2.51.0's perf_analyzer into .venv/bin), or use tool='builtin'",
    )


def parse_csv(path: Path, *, tool_output: str = "") -> list[dict[str, float]]:
    """perf_analyzer's -f report: one dict per load level, numbers as floats (latencies in microseconds)."""
    try:
        with path.open(newline="") as handle:
            rows = [{k.strip(): float(v) for k, v in row.items() if k and v} for row in csv.DictReader(handle)]
    except (OSError, ValueError) as e:
        raise TritonLabError(f"cannot read perf_analyzer's report {path}: {e}", fix=_rerun_fix(tool_output)) from None
    if not rows:
        raise TritonLabError(f"perf_analyzer wrote no measurements to {path}", fix=_rerun_fix(tool_output))
    return rows


def _request_counts(output: str) -> list[int]:
    """Client-side "Request count:" per load level, in order (the CSV has no count column)."""
    counts, in_client = [], False
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("Client:"):
            in_client = True
        elif stripped.startswith("Server:"):
            in_client = False
        elif in_client and stripped.startswith("Request count:"):
            counts.append(int(stripped.split(":", 1)[1]))
            in_client = False
    return counts


def error_line(output: str) -> str:
    """The first line of perf_analyzer's output that says what went wrong (else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if _ERROR_LINE.search(line)), lines[-1] if lines else "(no output)")


def _rerun_fix(output: str, command: Sequence[str] = ()) -> str:
    if "stable" in output:
        return ("the load was too noisy to stabilise: use a longer measurement (duration_s / --duration), "
                "or relax stability_percentage (e.g. 50)")  # fmt: skip
    if "unknown model" in output or "is not found" in output or "not available" in output:
        return "check the model name (`tritonlab status`, server.repository_index())"
    if command:
        return "run the command yourself to see all its output: " + " ".join(command)
    return "run perf_analyzer yourself with the same arguments to see all its output"


def run_perf_analyzer(
    url: str,
    model: str,
    *,
    protocol: str = "grpc",
    concurrency: Sequence[int] = (1,),
    request_rate: Sequence[float] | None = None,
    measurement_interval_ms: int = 3000,
    input_data: Path | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    batch_size: int = 1,
    stats_reader: StatsReader | None = None,
    stability_percentage: float = 10.0,
    max_trials: int = 10,
    label: str = "",
    extra_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> list[BenchRow]:
    """perf_analyzer at each concurrency (or each request rate, if given): one ``BenchRow`` per level.

    ``url`` is the endpoint of ``protocol`` (gRPC address or HTTP URL; a scheme is dropped). Non-zero exits
    raise ``TritonLabError`` quoting perf_analyzer's own error line.
    """
    if protocol not in ("grpc", "http"):
        raise TritonLabError(f"protocol={protocol!r} is not supported", fix="use 'grpc' or 'http'")
    binary = find_perf_analyzer()
    host, port = host_port(url)
    base = [str(binary), "-m", model, "-u", f"{host}:{port}", "-i", protocol, "-b", str(batch_size),
            "--measurement-interval", str(int(measurement_interval_ms)), "-s", f"{stability_percentage:g}",
            "--max-trials", str(max_trials), "--verbose-csv"]  # fmt: skip
    if input_data is not None:
        base += ["--input-data", str(input_data)]
    for name, dims in (shapes or {}).items():
        base += ["--shape", f"{name}:{','.join(str(int(d)) for d in dims)}"]
    base += list(extra_args)
    levels: list[tuple[str, float]] = (
        [("--request-rate-range", float(r)) for r in request_rate]
        if request_rate
        else [("--concurrency-range", float(c)) for c in concurrency]
    )
    if timeout_s is None:  # up to max_trials windows per level, plus start-up
        timeout_s = 60 + max_trials * measurement_interval_ms / 1000 * 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="tritonlab-pa-") as tmp:
        for index, (flag, level) in enumerate(levels):
            report = Path(tmp) / f"level{index}.csv"
            command = [*base, flag, f"{level:g}", "-f", str(report)]
            before = stats_reader() if stats_reader else None
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise TritonLabError(
                    f"perf_analyzer did not finish within {timeout_s:.0f} s ({flag} {level:g})",
                    fix="lower max_trials or the measurement interval, or check that the server answers",
                ) from None
            output = result.stdout + result.stderr
            if result.returncode != 0:
                raise TritonLabError(
                    f"perf_analyzer failed (exit {result.returncode}) for model {model!r} at {flag} {level:g}: "
                    f"{error_line(output)}",
                    fix=_rerun_fix(output, command),
                )
            after = stats_reader() if stats_reader else None
            measured = parse_csv(report, tool_output=output)[0]
            counts = _request_counts(result.stdout)
            rows.append(_row(measured, counts[0] if counts else None, model=model, protocol=protocol,
                             batch_size=batch_size, label=label, before=before, after=after,
                             by_rate=flag == "--request-rate-range"))  # fmt: skip
    return rows


def _row(
    measured: dict[str, float],
    requests: int | None,
    *,
    model: str,
    protocol: str,
    batch_size: int,
    label: str,
    before: dict | None,
    after: dict | None,
    by_rate: bool,
) -> BenchRow:
    throughput = measured["Inferences/Second"]
    latency = {field: measured.get(column, float("nan")) / 1000 for column, field in _LATENCY_COLUMNS.items()}
    if requests is None:  # older output formats: derive from the rate and PA's window
        requests = 0
    window_s = requests * batch_size / throughput if throughput and requests else 0.0
    return BenchRow(
        tool="perf_analyzer", protocol=protocol, model=model,
        concurrency=None if by_rate else int(measured["Concurrency"]),
        request_rate=measured["Request Rate"] if by_rate else None,
        throughput=throughput, requests=requests, errors=0, window_s=window_s, label=label, batch_size=batch_size,
        server_stats={"before": before, "after": after} if before is not None and after is not None else None,
        **latency,
    )  # fmt: skip
