"""Reading Triton's reasons from its log. The fixture is a real tritonserver 2.51.0 log (two broken models)."""

from __future__ import annotations

from pathlib import Path

from tritonlab.server import logparse

LOG = (Path(__file__).parent / "data" / "startup_two_failures.log").read_text()


def test_model_table_rows_with_wrapped_status():
    table = logparse.model_status_table(LOG)
    assert table[("add_sub", "1")] == "READY"
    status = table[("broken", "1")]
    assert status.startswith("UNAVAILABLE: Internal: ValueError: weights file missing: /nope.bin")
    assert "model.py(4): initialize" in status  # the continuation rows are joined


def test_failures_include_models_that_never_reach_the_table():
    failures = logparse.model_failures(LOG)
    assert set(failures) == {"badcfg", "broken"}
    assert "config.pbtxt" in failures["badcfg"]
    assert '4:52: Expected ",", found "}"' in failures["badcfg"]  # libprotobuf's line:column


def test_significant_errors_keep_the_fatal_line_and_drop_cpu_noise():
    errors = logparse.significant_errors(LOG)
    assert "error: creating server: Internal - failed to load all models" in errors
    assert not any("CudaDriverHelper" in e for e in errors)


def test_records_unquote_messages():
    records = logparse.records(LOG)
    loading = [r for r in records if r.message.startswith("loading: ")]
    assert [r.message for r in loading] == ["loading: add_sub:1", "loading: broken:1"]
    assert all(r.level == "I" and r.source.startswith("model_lifecycle.cc:") for r in loading)


def test_port_conflict_lines():
    line = (
        'E1121 22:00:16.9 3886 main.cc:233] "failed to start GRPC service: '
        "Unavailable - Socket '127.0.0.1:8001' already in use\""
    )
    assert logparse.port_conflict(line) == 8001
    assert logparse.port_conflict(LOG) is None


def test_a_clean_log_has_no_failures():
    assert logparse.model_failures("I1121 22:00:18.7 1 model_lifecycle.cc:839] \"successfully loaded 'm'\"") == {}
