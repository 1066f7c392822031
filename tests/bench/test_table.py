"""BenchRow / BenchTable: server-side deltas, queries, JSON files (and their errors), text and HTML display."""

from __future__ import annotations

import json

import pytest

from tritonlab.bench import BenchRow, BenchTable
from tritonlab.errors import TritonLabError


def snapshot(success: int, executions: int, batches: dict[int, int]) -> dict:
    return {"success_count": success, "inference_count": success, "execution_count": executions,
            "queue_ns": success * 1_000_000, "compute_infer_ns": 0, "last_inference": 0,
            "batch_stats": batches}  # fmt: skip


def row(concurrency: int, throughput: float, p99: float, label: str = "base", **extra) -> BenchRow:
    fields = dict(tool="builtin", protocol="grpc", model="add_sub", concurrency=concurrency, request_rate=None,
                  throughput=throughput, p50_ms=p99 / 3, p90_ms=p99 / 2, p95_ms=p99 / 1.5, p99_ms=p99,
                  avg_ms=p99 / 2.5, requests=int(throughput), errors=0, window_s=1.0, label=label)  # fmt: skip
    return BenchRow(**{**fields, **extra})


@pytest.fixture
def table() -> BenchTable:
    stats = {"before": snapshot(100, 100, {1: 100}), "after": snapshot(500, 200, {1: 150, 4: 50})}
    return BenchTable([row(1, 500, 2.0), row(8, 2000, 6.0, server_stats=stats), row(32, 2600, 20.0),
                       row(8, 2400, 5.0, label="batched")])  # fmt: skip


def test_server_deltas(table):
    measured = table[1]
    assert measured.server_requests == 400
    assert measured.server_avg_batch == pytest.approx(4.0)
    assert measured.server_batch_sizes == {1: 50, 4: 50}
    assert measured.server_avg_queue_ms == pytest.approx(1.0)
    assert table[0].server_requests is None and table[0].server_avg_batch is None


def test_best_under_slo_and_filter(table):
    assert table.best_under_slo(p99_ms=6.0).throughput == 2400  # 2600 misses the SLO, 2400 beats 2000
    assert table.best_under_slo(p99_ms=6.0, concurrency=1).concurrency == 1
    assert table.best_under_slo(p99_ms=1.0) is None
    assert [r.throughput for r in table.filter(label="base", concurrency=8)] == [2000]
    assert len(table.filter(label="batched")) == 1 and table.labels == ["base", "batched"]
    with pytest.raises(TritonLabError, match="no field named colour"):
        table.filter(colour="red")


def test_list_like(table):
    assert len(table) == 4 and isinstance(table[1:], BenchTable) and len(table[1:]) == 3
    grown = BenchTable().extend(table)
    grown.append(row(64, 1.0, 99.0))
    assert len(grown) == 5 and [r.concurrency for r in grown][-1] == 64
    assert len(table + grown) == 9


def test_json_round_trip(table, tmp_path):
    assert BenchTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table  # batch sizes come back as ints
    path = table.save(tmp_path / "deep" / "results.json")
    loaded = BenchTable.load(path)
    assert loaded == table and loaded[1].server_batch_sizes == {1: 50, 4: 50}
    assert not list(path.parent.glob("*.tmp"))


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(TritonLabError) as error:
        BenchTable.load(missing)
    assert str(missing) in error.value.message and "save_to" in error.value.fix


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"rows": 3}', '{"rows": [{"tool": "builtin"}]}'])
def test_malformed_file_is_a_clear_error(tmp_path, text):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(TritonLabError) as error:
        BenchTable.load(path)
    assert f"{path} is not a tritonlab benchmark results file" in error.value.message
    assert str(path) in error.value.fix and "Traceback" not in str(error.value)


def test_text_and_html(table):
    text = str(table)
    lines = text.splitlines()
    assert "infer/s" in lines[2] and "p99 ms" in lines[2] and "srv batch" in lines[2]
    assert "2,400.0" in text and "batched" in text and "c=32" in text and "4.00" in text  # avg batch of row 2
    assert len({len(line) for line in lines[1:]}) == 1  # aligned: every table line the same width
    assert "label" not in str(BenchTable([row(1, 1.0, 1.0, label="")]))  # no empty label column
    html = table._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 5 and "<th>p99 ms</th>" in html
