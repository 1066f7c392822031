"""The builtin load generator against a real server: both protocols, both modes, errors, stats windows."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from tritonlab.bench import InputSet
from tritonlab.bench.loadgen import GrpcTransport, run_loadgen
from tritonlab.bench.stats import model_stats_reader
from tritonlab.errors import TritonLabError


@pytest.fixture(scope="module")
def inputs(server) -> InputSet:
    return InputSet.from_model(server, "add_sub")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_fixed_concurrency(server, inputs, protocol):
    url = server.grpc_address if protocol == "grpc" else server.http_url
    row = run_loadgen(url, "add_sub", inputs, protocol=protocol, concurrency=4, duration_s=1.0, warmup_s=0.3,
                      stats_reader=model_stats_reader(server.http_url, "add_sub"), progress=False)  # fmt: skip
    assert row.tool == "builtin" and row.protocol == protocol and row.concurrency == 4 and row.request_rate is None
    assert row.throughput > 50 and row.errors == 0 and row.first_error is None
    assert 0 < row.p50_ms <= row.p90_ms <= row.p95_ms <= row.p99_ms and row.avg_ms > 0
    assert row.window_s == pytest.approx(1.0, abs=0.1)
    assert row.throughput == pytest.approx(row.requests / row.window_s)
    # The window is defined by the two stats reads, so both sides count the same span, up to what was in flight
    # (the concurrency) and when, within each read (a few ms on a busy 2-core machine), the server took its snapshot.
    assert abs(row.requests - row.server_requests) <= 4 + 5 + 0.01 * row.requests, (row.requests, row.server_requests)
    assert row.server_avg_batch >= 1.0 and sum(row.server_batch_sizes.values()) > 0


def test_fixed_request_rate(server, inputs):
    rate, warmup_s, duration_s = 150, 0.5, 3.0
    row = run_loadgen(server.grpc_address, "add_sub", inputs, request_rate=rate, duration_s=duration_s,
                      warmup_s=warmup_s, progress=False)  # fmt: skip
    assert row.concurrency is None and row.request_rate == rate and row.server_stats is None
    # Open loop: a send that fell behind (a stall on a busy machine) leaves at once, as perf_analyzer's do, so the
    # window may hold a catch-up (CI: 178/s for 150 over 1.5 s). It can never run ahead of the schedule, though:
    # no more than the slots due by the window's end (0.1 s slack for the edges' own timing).
    assert 0.8 * rate <= row.throughput <= (rate * (warmup_s + duration_s + 0.1) + 1) / duration_s


def test_batch_size_counts_inferences(server, inputs):
    reader = model_stats_reader(server.http_url, "add_sub")
    row = run_loadgen(server.grpc_address, "add_sub", inputs, concurrency=2, duration_s=0.5, warmup_s=0.2,
                      batch_size=4, stats_reader=reader, progress=False)  # fmt: skip
    assert row.batch_size == 4 and row.throughput == pytest.approx(4 * row.requests / row.window_s)
    stats = row.server_stats
    assert stats["after"]["inference_count"] - stats["before"]["inference_count"] == pytest.approx(
        4 * row.server_requests, abs=8
    )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_input_quotes_triton(server, protocol):
    bad = InputSet.from_arrays({"BAD": np.ones(4, np.float32)})
    url = server.grpc_address if protocol == "grpc" else server.http_url
    with pytest.raises(TritonLabError) as error:
        run_loadgen(url, "add_sub", bad, protocol=protocol, concurrency=2, duration_s=0.5, progress=False)
    assert "Triton rejected" in error.value.message
    assert "expected 2 inputs but got 1" in error.value.message and "BAD" in error.value.message


def test_no_server_answers(inputs):
    with pytest.raises(TritonLabError, match=r"no Triton server answers at 127\.0\.0\.1:1"):
        run_loadgen("grpc://127.0.0.1:1", "add_sub", inputs, concurrency=1, duration_s=0.5, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [({}, "exactly one of"), ({"concurrency": 2, "request_rate": 5.0}, "exactly one of"),
     ({"concurrency": 0}, "at least 1"), ({"request_rate": -1.0}, "must be > 0"),
     ({"concurrency": 1, "protocol": "udp"}, "not supported")],
)  # fmt: skip
def test_arguments_are_checked(inputs, kwargs, message):
    with pytest.raises(TritonLabError, match=message):
        run_loadgen("127.0.0.1:1", "add_sub", inputs, progress=False, **kwargs)


def test_runs_inside_a_running_event_loop(server, inputs):
    """A Jupyter cell runs inside an event loop: run_loadgen must still work there."""

    async def cell():
        return run_loadgen(server.grpc_address, "add_sub", inputs, concurrency=2, duration_s=0.3, warmup_s=0.1,
                           progress=False)  # fmt: skip

    assert asyncio.run(cell()).requests > 0


def test_grpc_uses_direct_calls(server, inputs):
    """The fast path (grpc.aio's Cython call without its Python wrapper) is in use with this grpcio."""

    async def opened() -> str:
        transport = GrpcTransport(server.grpc_address, "add_sub", inputs, 1)
        await transport.open()
        try:
            await transport.send()
            return transport.send.__name__
        finally:
            await transport.close()

    assert asyncio.run(opened()) == "_send_direct"


def test_classic_grpc_client_only_for_the_import():
    code = ("import os, sys; from tritonlab.bench.loadgen import prefer_classic_grpc_client as prefer; "
            "print(prefer(), 'grpc' in sys.modules, 'GRPC_EXPERIMENTS' in os.environ, prefer())")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "True", "False", "False"], result.stderr
    assert result.stderr == ""  # grpcio knew the experiment: no "Unknown experiment" complaint
