"""Benchmark a Triton model: perf_analyzer or our own load generator, one table of results, one plot.

from tritonlab.bench import run_bench, plot_curve
table = run_bench(server, "add_sub", concurrency="1:32:x2", label="baseline", save_to="results.json")
print(table)                      # aligned text table (rich HTML in a notebook)
table.best_under_slo(p99_ms=10)   # highest throughput whose p99 meets the SLO
plot_curve(table, slo_ms=10)      # throughput vs p99 latency, one line per label
"""

from tritonlab.bench.inputs import InputSet
from tritonlab.bench.perf_analyzer import find_perf_analyzer, run_perf_analyzer
from tritonlab.bench.plot import plot_curve
from tritonlab.bench.runner import parse_concurrency, run_bench
from tritonlab.bench.table import BenchRow, BenchTable

__all__ = [
    "BenchRow",
    "BenchTable",
    "InputSet",
    "find_perf_analyzer",
    "parse_concurrency",
    "plot_curve",
    "run_bench",
    "run_perf_analyzer",
]
