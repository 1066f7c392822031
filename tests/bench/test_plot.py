"""plot_curve: one line per label, load levels annotated, SLO line, PNG written; works without a display."""

from __future__ import annotations

from matplotlib.figure import Figure

from tritonlab.bench import BenchTable, plot_curve
from tritonlab.bench.table import BenchRow


def row(label: str, concurrency: int, throughput: float, p99: float) -> BenchRow:
    return BenchRow(tool="builtin", protocol="grpc", model="add_sub", concurrency=concurrency, request_rate=None,
                    throughput=throughput, p50_ms=p99 / 2, p90_ms=p99, p95_ms=p99, p99_ms=p99, avg_ms=p99 / 2,
                    requests=100, errors=0, window_s=1.0, label=label)  # fmt: skip


def test_plot_writes_png_and_returns_the_figure(tmp_path):
    table = BenchTable([row("base", 4, 1500, 4.0), row("base", 1, 600, 2.0), row("batched", 1, 700, 2.5),
                        row("batched", 4, 2100, 5.0)])  # fmt: skip
    figure = plot_curve(table, slo_ms=4.5, save_to=tmp_path / "out" / "curve.png")
    assert isinstance(figure, Figure)
    png = tmp_path / "out" / "curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"base", "batched", "SLO p99 = 4.5 ms"}
    assert list(lines["base"].get_xdata()) == [2.0, 4.0]  # sorted by concurrency
    assert {t.get_text() for t in ax.texts} == {"c=1", "c=4"}
    assert ax.get_xlabel() == "p99 latency (ms)" and ax.get_ylabel() == "throughput (infer/s)"


def test_plot_on_a_given_axes():
    figure = Figure()
    ax = figure.add_subplot()
    assert plot_curve([row("", 2, 900, 3.0)], ax=ax) is figure
    assert ax.get_lines()[0].get_label() == "add_sub builtin grpc"  # unlabelled rows: model, tool, protocol
