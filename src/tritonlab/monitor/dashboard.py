"""A live dashboard in the notebook: throughput, latency and queue time of one model, from Prometheus.

    dash = LiveDashboard(prom, "encoder")
    display(dash.widget())                                  # ipywidgets: an image redrawn every second
    rows = dash.watch(lambda: run_bench(server, "encoder", concurrency=8, duration_s=5), save_to="dash.png")

The panels are PromQL range queries (``dash.queries``), drawn with matplotlib's object API (no pyplot, no GUI
backend): what a Grafana panel would show, in the notebook, with the exact queries visible.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tritonlab.monitor.api import PrometheusAPI, Series

T = TypeVar("T")


def panel_queries(model: str, rate_window: str = "3s") -> dict[str, dict[str, str]]:
    """{panel title: {line label: PromQL}} for ``model``."""
    sel = f'model="{model}"'
    per_request = f"sum(rate(nv_inference_request_success{{{sel}}}[{rate_window}]))"
    return {
        "throughput (inferences/s)": {"throughput": f"sum(rate(nv_inference_count{{{sel}}}[{rate_window}]))"},
        "latency (ms)": {
            "average": f"sum(rate(nv_inference_request_duration_us{{{sel}}}[{rate_window}])) / {per_request} / 1000",
            "p95": f'max(nv_inference_request_summary_us{{{sel},quantile="0.95"}}) / 1000',
        },
        "queue time (ms per request)": {
            "queue": f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[{rate_window}])) / {per_request} / 1000"
        },
    }


class LiveDashboard:
    """Three panels for one model over the last ``window_s`` seconds, redrawn from Prometheus on ``refresh``."""

    def __init__(self, prom: PrometheusAPI, model: str, *, window_s: float = 30.0, rate_window: str = "3s"):
        self.prom = prom
        self.model = model
        self.window_s = window_s
        self.queries = panel_queries(model, rate_window)
        self.data: dict[str, dict[str, list[Series]]] = {}
        self._image: Any = None
        self._status: Any = None

    def fetch(self, end: float | None = None) -> dict[str, dict[str, list[Series]]]:
        """Run every panel's range query over the last ``window_s`` seconds (1 s steps)."""
        end = end or time.time()
        self.data = {
            panel: {label: self.prom.query_range(q, end - self.window_s, end, 1.0) for label, q in lines.items()}
            for panel, lines in self.queries.items()
        }
        return self.data

    def figure(self) -> Any:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 3.2), layout="constrained")
        axes = fig.subplots(1, len(self.queries))
        start = min((s.times[0] for lines in self.data.values() for ss in lines.values() for s in ss if s.points),
                    default=time.time())  # fmt: skip
        for ax, (panel, lines) in zip(axes, self.data.items(), strict=True):
            for label, series in lines.items():
                for s in series:
                    ax.plot([t - start for t in s.times], s.values, label=label)
            ax.set_title(panel, fontsize=10)
            ax.set_xlabel("seconds")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if len(ax.get_lines()) > 1:
                ax.legend(fontsize=8)
        fig.suptitle(f"{self.model}: live from Prometheus ({self.prom.url})", fontsize=10)
        return fig

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()

    def widget(self) -> Any:
        """An ipywidgets box (status line + image) that ``refresh`` and ``watch`` update in place."""
        import ipywidgets as widgets

        self._status = widgets.HTML(value=f"<b>{self.model}</b>: waiting for data")
        self._image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        return widgets.VBox([self._status, self._image])

    def refresh(self) -> bytes:
        """Query Prometheus, redraw, and update the widget (if shown); the PNG bytes."""
        self.fetch()
        image = self.png()
        if self._image is not None:
            self._image.value = image
            latest = {label: s[-1].values[-1] for lines in self.data.values() for label, s in lines.items()
                      if s and s[-1].points}  # fmt: skip
            text = ", ".join(f"{k} {v:.1f}" for k, v in latest.items())
            self._status.value = f"<b>{self.model}</b> at {time.strftime('%H:%M:%S')}: {text}"
        return image

    def watch(self, load: Callable[[], T], *, every_s: float = 1.0, save_to: str | Path | None = None) -> T:
        """Run ``load`` in a thread, refreshing every ``every_s`` until it ends; save the last frame as a PNG."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["value"] = load()
            except BaseException as e:  # re-raised in the caller's thread
                outcome["error"] = e

        worker = threading.Thread(target=run, name="dashboard-load", daemon=True)
        worker.start()
        while worker.is_alive():
            self.refresh()
            worker.join(timeout=every_s)
        time.sleep(every_s * 1.2)  # one more scrape: the last second of the load is in the final frame
        image = self.refresh()
        if save_to is not None:
            Path(save_to).write_bytes(image)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]
