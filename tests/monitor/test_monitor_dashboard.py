"""tritonlab.monitor.dashboard: panels drawn from a real Prometheus during a real load run, PNG saved."""

from __future__ import annotations

import math

import pytest
from monitor_fixtures import needs_prometheus, start_triton

from tritonlab.bench import run_bench
from tritonlab.monitor import Prometheus
from tritonlab.monitor.dashboard import LiveDashboard, panel_queries

pytestmark = needs_prometheus


def test_watch_updates_the_widget_during_the_load_and_saves_the_png(tmp_path):
    with start_triton() as triton, Prometheus(triton) as prom:
        prom.wait_first_scrape()
        dash = LiveDashboard(prom, "add_sub", window_s=20)
        box = dash.widget()
        frames = []
        original = dash.refresh
        dash.refresh = lambda: frames.append(original()) or frames[-1]  # count the frames drawn
        table = dash.watch(lambda: run_bench(triton, "add_sub", tool="builtin", concurrency=4, duration_s=3.0,
                                             warmup_s=0.5, progress=False), save_to=tmp_path / "dash.png")  # fmt: skip
        assert table[0].throughput > 0
        assert len(frames) >= 3  # redrawn while the load ran, not only at the end
        png = (tmp_path / "dash.png").read_bytes()
        assert png.startswith(b"\x89PNG") and box.children[1].value == png
        assert "add_sub" in box.children[0].value
        (series,) = dash.data["throughput (inferences/s)"]["throughput"]
        assert max(series.values) > 0.5 * table[0].throughput  # the panel saw the load the bench measured
        (queue,) = dash.data["queue time (ms per request)"]["queue"]
        measured = [v for v in queue.values if math.isfinite(v)]  # a window with no request has no queue time
        assert measured and all(v >= 0 for v in measured)


def test_panel_queries_select_the_model():
    queries = panel_queries("encoder", "5s")
    assert all('model="encoder"' in q for lines in queries.values() for q in lines.values())
    assert 'quantile="0.95"' in queries["latency (ms)"]["p95"]


def test_watch_reraises_the_loads_error(tmp_path):
    with start_triton() as triton, Prometheus(triton) as prom:
        dash = LiveDashboard(prom, "add_sub")

        def broken() -> None:
            raise ValueError("load failed")

        with pytest.raises(ValueError, match="load failed"):
            dash.watch(broken, every_s=0.1)
