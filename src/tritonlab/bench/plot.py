"""Throughput against tail latency: the curve capacity planning reads (where does p99 cross the SLO?)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritonlab.bench.table import BenchRow, BenchTable


def _series_name(row: BenchRow) -> str:
    return row.label or f"{row.model} {row.tool} {row.protocol}"


def _level(row: BenchRow) -> float:
    return float(row.concurrency if row.concurrency is not None else row.request_rate or 0)


def plot_curve(
    table: BenchTable | list[BenchRow],
    *,
    slo_ms: float | None = None,
    ax: Any = None,
    save_to: str | Path | None = None,
    title: str | None = None,
) -> Any:
    """x = p99 latency (ms), y = throughput (infer/s); one line per label, points marked with their load level.

    Returns the matplotlib Figure (a notebook shows it inline); ``save_to`` also writes it as a PNG.
    Built on ``matplotlib.figure.Figure``, not pyplot: no GUI backend needed, and no second copy in notebooks.
    """
    from matplotlib.figure import Figure

    rows = list(table)
    if ax is None:
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    series: dict[str, list[BenchRow]] = {}
    for row in rows:
        series.setdefault(_series_name(row), []).append(row)
    for name, points in series.items():
        points.sort(key=_level)
        (line,) = ax.plot([r.p99_ms for r in points], [r.throughput for r in points], marker="o", label=name)
        for row in points:
            ax.annotate(row.load, (row.p99_ms, row.throughput), textcoords="offset points", xytext=(4, 4),
                        fontsize=8, color=line.get_color())  # fmt: skip
    if slo_ms is not None:
        ax.axvline(slo_ms, linestyle="--", color="gray", label=f"SLO p99 = {slo_ms:g} ms")
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (infer/s)")
    ax.set_title(title or "throughput vs p99 latency: " + ", ".join(sorted({r.model for r in rows})))
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    if series or slo_ms is not None:
        ax.legend(fontsize=8)
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(save_to, dpi=120)
    return figure
