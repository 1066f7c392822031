"""Lab 5's helpers that need no server: the workload, the limits the lab asks for, and the plots."""

from __future__ import annotations

import json

import pytest

from tritonlab.errors import TritonLabError
from tritonlab.labs import lab5


def test_the_workload_is_the_same_list_every_time_and_mostly_short():
    requests = lab5.mixed_requests()
    assert requests == lab5.mixed_requests() and len(requests) == lab5.WORKLOAD_REQUESTS
    lengths = sorted(n for _, n in requests)
    lo, hi = lab5.ANSWER_RANGE
    assert lo <= lengths[0] and lengths[-1] <= hi
    assert lengths[len(lengths) // 2] < (lo + hi) / 2  # log-uniform: the median answer is short
    assert lengths[-1] >= 2 * lengths[len(lengths) // 2]  # and a long one holds a static batch back
    assert lengths[-1] <= lab5.LAB_NEEDS.answer_tokens  # every answer fits the engine the learner builds


def test_limits_follow_from_the_service_needs():
    assert lab5.LAB_NEEDS.limits == {"max_batch_size": 8, "max_input_len": 32, "max_seq_len": 160}
    assert lab5.TRTLLM_SCENARIO["max_seq_len"] == 2048 + 512


def test_set_batching_refuses_an_unknown_strategy_before_touching_the_server():
    with pytest.raises(TritonLabError, match="inflight, static"):
        lab5.set_batching(None, "v1")


def test_curve_is_saved_as_a_png(tmp_path):
    rows = [
        {"concurrency": c, "output_token_throughput": 40.0 * c, "time_to_first_token": {"p50": 50.0 * c},
         "inter_token_latency": {"p50": 15.0 + c}}
        for c in (1, 2, 4)
    ]  # fmt: skip
    fig = lab5.plot_curve(rows, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_xlabel() for ax in fig.axes] == ["time to first token p50 (ms)", "inter-token latency p50 (ms)"]


def test_timeline_draws_one_bar_per_finished_request_and_says_when_nothing_was_measured(tmp_path):
    with pytest.raises(TritonLabError, match="measure_batching"):
        lab5.plot_timeline(tmp_path / "none.json")
    events = [{"event": "admit", "t": 1.0, "id": "a"}, {"event": "admit", "t": 1.0, "id": "b"},
              {"event": "finish", "t": 1.5, "id": "a", "tokens": 4}, {"event": "finish", "t": 3.0, "id": "b",
              "tokens": 16}]  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps({"static": {"events": events}}))
    fig = lab5.plot_timeline(tmp_path / "r.json")
    (ax,) = fig.axes
    assert len(ax.patches) == 2 and "2 requests served in 2.0 s" in ax.get_title()
