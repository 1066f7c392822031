"""run_bench end to end on a real server: levels, tools, targets, inputs, results files; parse_concurrency."""

from __future__ import annotations

import numpy as np
import pytest

from tritonlab.bench import BenchTable, parse_concurrency, run_bench
from tritonlab.bench.runner import choose_tool, resolve_endpoints
from tritonlab.errors import TritonLabError

QUICK = {"duration_s": 0.5, "warmup_s": 0.2, "progress": False}


@pytest.mark.parametrize(
    "spec, levels",
    [("1:32:x2", [1, 2, 4, 8, 16, 32]), ("1:16:4", [1, 5, 9, 13]), ("8", [8]), ("1,4,16", [1, 4, 16]),
     ("2:4", [2, 3, 4]), (" 1 : 8 : x4 ", [1, 4]), (6, [6]), ([3, 1], [3, 1])],
)  # fmt: skip
def test_parse_concurrency(spec, levels):
    assert parse_concurrency(spec) == levels


@pytest.mark.parametrize("spec", ["", "x2", "1:32:x1", "0:4", "8:2", "1:4:0", "a,b", [0], "1;2"])
def test_parse_concurrency_errors(spec):
    with pytest.raises(TritonLabError) as error:
        parse_concurrency(spec)
    assert '"1:32:x2"' in error.value.fix


def test_builtin_sweep_saved_and_appended(server, tmp_path):
    results = tmp_path / "results.json"
    table = run_bench(server, "add_sub", tool="builtin", concurrency="1:2:x2", label="base", save_to=results, **QUICK)
    assert [(r.tool, r.concurrency, r.label) for r in table] == [("builtin", 1, "base"), ("builtin", 2, "base")]
    assert all(r.throughput > 0 and r.server_requests for r in table)
    run_bench(server, "add_sub", tool="builtin", concurrency=1, label="again", save_to=results, **QUICK)
    saved = BenchTable.load(results)
    assert [r.label for r in saved] == ["base", "base", "again"] and saved[:2] == table


def test_url_target_finds_grpc_in_the_registry(server):
    assert resolve_endpoints(server.http_url) == (server.http_url, server.grpc_address)
    (row,) = run_bench(server.http_url, "add_sub", tool="builtin", concurrency=[2], **QUICK)
    assert row.protocol == "grpc" and row.requests > 0


def test_unknown_grpc_port_is_a_clear_error():
    with pytest.raises(TritonLabError) as error:
        resolve_endpoints("http://127.0.0.1:1")
    assert "grpc_url=" in error.value.fix
    assert resolve_endpoints("127.0.0.1:1", need_grpc=False) == ("http://127.0.0.1:1", None)
    assert resolve_endpoints("http://127.0.0.1:1", "grpc://127.0.0.1:2")[1] == "127.0.0.1:2"


def test_request_rate_over_http_with_given_arrays(server):
    arrays = {"INPUT0": np.arange(4, dtype=np.float32), "INPUT1": [1, 1, 1, 1]}
    table = run_bench(server, "add_sub", tool="builtin", request_rate=[80, 160], protocol="http", inputs=arrays,
                      batch_size=2, duration_s=1.0, warmup_s=0.2, progress=False)  # fmt: skip
    assert [r.request_rate for r in table] == [80, 160] and {r.concurrency for r in table} == {None}
    for row, rate in zip(table, (80, 160), strict=True):
        assert row.batch_size == 2 and row.throughput == pytest.approx(2 * rate, rel=0.2)  # inferences, not requests


def test_perf_analyzer_tool(server):
    (row,) = run_bench(server, "add_sub", tool="perf_analyzer", concurrency=2, stability_percentage=999, **QUICK)
    assert row.tool == "perf_analyzer" and row.concurrency == 2 and row.throughput > 0 and row.server_requests
    assert choose_tool("auto") == "perf_analyzer"  # installed by make setup


def test_refusals_come_before_any_load(server, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(TritonLabError, match="not a tritonlab benchmark results file"):
        run_bench(server, "add_sub", tool="builtin", save_to=broken, **QUICK)
    with pytest.raises(TritonLabError, match="not a benchmark tool"):
        run_bench(server, "add_sub", tool="locust", **QUICK)
    with pytest.raises(TritonLabError, match="max_batch_size 8"):
        run_bench(server, "add_sub", tool="builtin", batch_size=16, **QUICK)
    with pytest.raises(TritonLabError, match="no input named 'TEXT'"):
        run_bench(server, "add_sub", tool="builtin", shapes={"TEXT": [3]}, **QUICK)
    assert broken.read_text() == "{"
