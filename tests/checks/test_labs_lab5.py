"""Lab 5's checkpoints against a real engine served by a real Triton: each passes on honest work and fails on the
mistakes learners make (old TensorRT-LLM flags, limits that forget the answer, a client that does not stream, ITL
that counts the first token, a 'static' run that was not static, numbers that do not match the records)."""

from __future__ import annotations

import json
import queue
import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonlab.checks.core import ServerInfo, Status
from tritonlab.checks.labs import lab5 as checks
from tritonlab.checks.runner import evaluate
from tritonlab.checks.store import save_submission
from tritonlab.checks.values import encode
from tritonlab.engine.serving.client import StreamRecord, llm_metrics
from tritonlab.labs import lab5

CONVERT = (
    "python examples/models/core/llama/convert_checkpoint.py --model_dir ./Llama-3.1-8B-Instruct "
    "--output_dir ./ckpt --dtype float16 --tp_size 2 --use_weight_only --weight_only_precision int8"
)
BUILD = (
    "trtllm-build --checkpoint_dir ./ckpt --output_dir ./engine --max_batch_size 64 --max_input_len 2048 "
    "--max_seq_len 2560 --gemm_plugin auto --kv_cache_type paged"
)


def verdict(root: Path, server: ServerInfo | None, checkpoint_id: str, **values) -> tuple[Status, str]:
    if values:  # functions travel as their source, as from the notebook
        save_submission(root, checkpoint_id, {k: encode(v) for k, v in values.items()}, replace=True)
    (result,) = evaluate([checkpoint_id], root, server, record=False)
    return result.status, result.message


def test_trtllm_commands_pass_the_right_pair_and_fail_the_old_notes(tmp_path):
    status, message = verdict(tmp_path, None, "lab5.trtllm_commands", commands=[CONVERT, BUILD])
    assert status == Status.PASS, message
    mistakes = {
        "--max_output_len": [CONVERT, BUILD.replace("--max_seq_len 2560", "--max_output_len 512")],
        "not a build flag": [CONVERT, BUILD + " --use_inflight_batching"],
        "--tp_size": [CONVERT.replace(" --tp_size 2", ""), BUILD],
        "weight-only": [CONVERT.replace(" --use_weight_only --weight_only_precision int8", ""), BUILD],
        "--checkpoint_dir": [CONVERT, BUILD.replace("--checkpoint_dir ./ckpt", "--checkpoint_dir ./hf")],
        "--max_seq_len 2048": [CONVERT, BUILD.replace("--max_seq_len 2560", "--max_seq_len 2048")],
        "convert_checkpoint.py then trtllm-build": [BUILD, CONVERT],
        "--model": [CONVERT, BUILD.replace("--checkpoint_dir ./ckpt", "--model ./ckpt")],
    }
    for expected, commands in mistakes.items():
        status, message = verdict(tmp_path, None, "lab5.trtllm_commands", commands=commands)
        assert status == Status.FAIL and expected in message, f"{expected}: {message}"
    status, message = verdict(tmp_path, None, "lab5.trtllm_commands", commands=CONVERT)
    assert status == Status.FAIL and "list of command lines" in message


@pytest.fixture(scope="module")
def lab(tmp_path_factory, checkpoint_dir):
    """A workspace as the lab leaves it after phase 4: the engine, its server, both strategies measured."""
    from tritonlab.engine.build import build_engine
    from tritonlab.engine.serving import prepare_repository
    from tritonlab.server import start_server

    root = tmp_path_factory.mktemp("lab5-ws")
    build_engine(checkpoint_dir, root / lab5.ENGINE_DIR, **lab5.LAB_NEEDS.limits, progress=False)
    prepare_repository(root / lab5.ENGINE_DIR, root / lab5.REPO)
    with start_server(root / lab5.REPO, model_control_mode="explicit", models=[lab5.ENSEMBLE]) as server:
        for strategy in lab5.STRATEGIES:
            lab5.measure_batching(server, strategy, repository=root / lab5.REPO, results=root / lab5.RESULTS)
        yield root, ServerInfo(server.http_url, server.grpc_url, server.metrics_url), server


def test_engine_passes_the_lab_limits_and_fails_wrong_limits_or_another_device(lab, tmp_path):
    root, _, _ = lab
    status, message = verdict(root, None, "lab5.engine", engine_dir=lab5.ENGINE_DIR)
    assert status == Status.PASS, message
    assert "max_input_len and max_seq_len are refused" in message
    # max_seq_len set to the answer alone (forgetting the prompt); an engine claiming another torch build (refused
    # the way a TensorRT engine moved to another GPU is). Edited copies: a second real build would take a minute.
    for name, section, key, value, expected in (
        ("short", "build_config", "max_seq_len", 128, "max_seq_len=128 (the service needs 160)"),
        ("moved", "device", "torch", "1.13.0", "1.13.0"),
    ):
        copy = shutil.copytree(root / lab5.ENGINE_DIR, tmp_path / name)
        config = json.loads((copy / "config.json").read_text())
        config[section][key] = value
        (copy / "config.json").write_text(json.dumps(config))
        status, message = verdict(root, None, "lab5.engine", engine_dir=str(copy))
        assert status == Status.FAIL and expected in message, f"{name}: {message}"
    status, message = verdict(root, None, "lab5.engine", engine_dir="nowhere")
    assert status == Status.FAIL and "not an engine directory" in message


def stream_tokens(url, prompt, max_tokens):
    responses = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    tokens = grpcclient.InferInput("max_tokens", [1], "INT32")
    tokens.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    client.start_stream(callback=lambda result, error: responses.put(error or result))
    pieces = []
    try:
        client.async_stream_infer("ensemble", [text, tokens], enable_empty_final_response=True)
        while True:
            result = responses.get(timeout=60)
            if isinstance(result, Exception):
                raise result
            response = result.get_response()
            if response.outputs:
                pieces.append(result.as_numpy("text_output").reshape(-1)[0].decode())
            if response.parameters["triton_final_response"].bool_param:
                return pieces
    finally:
        client.stop_stream()
        client.close()


def joined_text(url, prompt, max_tokens):
    return ["".join(stream_tokens(url, prompt, max_tokens))]  # the whole answer as one piece: not streamed


def first_response_only(url, prompt, max_tokens):
    return stream_tokens(url, prompt, max_tokens)[:1]


def canned(url, prompt, max_tokens):
    return ["▁once", "▁upon"]  # never asks the server


def test_streaming_passes_a_real_stream_and_fails_clients_that_do_not_stream(lab):
    root, info, _ = lab
    status, message = verdict(root, info, "lab5.streaming", stream_tokens=stream_tokens)
    assert status == Status.PASS, message
    assert "refused" in message and "generate_stream" in message
    for wrong, expected in ((joined_text, "pieces"), (first_response_only, "pieces"), (canned, "reaching the server")):
        status, message = verdict(root, info, "lab5.streaming", stream_tokens=wrong)
        assert status == Status.FAIL and expected in message, f"{wrong.__name__}: {message}"


def test_streaming_waits_for_the_reference_request_to_be_counted(lab, monkeypatch):
    """Triton counts a streamed request when it releases it, a moment after its last response. Replayed here: the
    check's own reference request stays uncounted for 0.5 s; a client that never asks the server must still fail
    (before the fix, the late count passed for the learner's request)."""
    import time

    from tritonlab.engine.serving import client

    root, info, _ = lab
    uncounted_until = [0.0]
    real_load, real_count = client.stream_load, checks._ensemble_success

    def late_counted_load(*args, **kwargs):
        records = real_load(*args, **kwargs)
        uncounted_until[0] = time.monotonic() + 0.5
        return records

    monkeypatch.setattr(client, "stream_load", late_counted_load)
    monkeypatch.setattr(
        checks, "_ensemble_success", lambda ctx: real_count(ctx) - (time.monotonic() < uncounted_until[0])
    )
    status, message = verdict(root, info, "lab5.streaming", stream_tokens=canned)
    assert status == Status.FAIL and "reaching the server" in message, message


def latencies(sent, token_times):
    ttft_ms = (token_times[0] - sent) * 1000
    if len(token_times) < 2:
        return {"ttft_ms": ttft_ms, "itl_ms": None}
    return {"ttft_ms": ttft_ms, "itl_ms": (token_times[-1] - token_times[0]) / (len(token_times) - 1) * 1000}


def itl_over_all_tokens(sent, token_times):
    return {"ttft_ms": (token_times[0] - sent) * 1000, "itl_ms": (token_times[-1] - sent) / len(token_times) * 1000}


def itl_median_gap(sent, token_times):
    gaps = np.diff(token_times)
    return {"ttft_ms": (token_times[0] - sent) * 1000, "itl_ms": float(np.median(gaps)) * 1000 if len(gaps) else None}


def in_seconds(sent, token_times):
    ms = latencies(sent, token_times)
    return {k: v / 1000 if v is not None else None for k, v in ms.items()}


def zero_for_one_token(sent, token_times):
    ms = latencies(sent, token_times)
    return {**ms, "itl_ms": ms["itl_ms"] or 0.0}


def test_token_metrics_pass_genai_perf_definitions_and_fail_the_usual_slips(lab):
    root, _, _ = lab
    status, message = verdict(root, None, "lab5.token_metrics", token_latencies=latencies)
    assert status == Status.PASS, message
    for wrong in (itl_over_all_tokens, itl_median_gap, in_seconds, zero_for_one_token):
        status, message = verdict(root, None, "lab5.token_metrics", token_latencies=wrong)
        assert status == Status.FAIL, f"{wrong.__name__}: {message}"


def reference_values(root: Path) -> tuple[dict[str, float], float]:
    records = lab5.load_records(root / lab5.RESULTS)
    throughput = {s: llm_metrics(r)["output_token_throughput"] for s, r in records.items()}
    return throughput, throughput["inflight"] / throughput["static"]


def test_batching_passes_honest_numbers_and_fails_wrong_ones_or_a_static_run_that_was_not(lab, tmp_path):
    root, info, _ = lab
    throughput, speedup = reference_values(root)
    status, message = verdict(root, info, "lab5.batching", throughput=throughput, speedup=speedup)
    assert status == Status.PASS, message
    assert speedup >= checks.MIN_SPEEDUP["KIND_CPU"]  # the fixture serves the engine on the CPU
    records = lab5.load_records(root / lab5.RESULTS)
    requests_per_s = {s: llm_metrics(r)["request_throughput"] for s, r in records.items()}
    for values in (
        {"throughput": throughput, "speedup": 1 / speedup},
        {"throughput": requests_per_s, "speedup": requests_per_s["inflight"] / requests_per_s["static"]},
    ):
        status, message = verdict(root, info, "lab5.batching", **values)
        assert status == Status.FAIL, message
    # A forged workspace: the in-flight run saved as the static one too (the step log gives it away).
    forged = shutil.copytree(root, tmp_path / "forged")
    saved = json.loads((forged / lab5.RESULTS).read_text())
    saved["static"] = saved["inflight"]
    (forged / lab5.RESULTS).write_text(json.dumps(saved))
    status, message = verdict(forged, info, "lab5.batching", throughput={s: throughput["inflight"] for s in
                                                                         lab5.STRATEGIES}, speedup=1.0)  # fmt: skip
    assert status == Status.FAIL and "not static batching" in message
    # Client timestamps edited to look faster: the server's own step log disagrees.
    saved = json.loads((root / lab5.RESULTS).read_text())
    for record in saved["static"]["records"]:
        record["token_times"] = [record["sent"] + (t - record["sent"]) * 3 for t in record["token_times"]]
    (forged / lab5.RESULTS).write_text(json.dumps(saved))
    slowed = {s: llm_metrics([StreamRecord(**r) for r in saved[s]["records"]])["output_token_throughput"]
              for s in lab5.STRATEGIES}  # fmt: skip
    status, message = verdict(forged, info, "lab5.batching", throughput=slowed,
                              speedup=slowed["inflight"] / slowed["static"])  # fmt: skip
    assert status == Status.FAIL and "step log" in message
    # Measured on another server than the one running now.
    status, message = verdict(root, ServerInfo("http://127.0.0.1:9", None), "lab5.batching", throughput=throughput,
                              speedup=speedup)  # fmt: skip
    assert status == Status.FAIL and "not on the running server" in message


def test_batching_is_unattempted_until_both_are_measured_and_fails_on_a_damaged_file(lab, tmp_path):
    root, info, _ = lab
    saved = json.loads((root / lab5.RESULTS).read_text())
    (tmp_path / lab5.RESULTS).write_text(json.dumps({"inflight": saved["inflight"]}))
    status, message = verdict(tmp_path, info, "lab5.batching", throughput={}, speedup=1.0)
    assert status == Status.UNATTEMPTED and "static" in message
    # a results file that measure_batching did not write: a verdict with the fix, not a crash of the check
    broken = {**saved, "static": {**saved["static"], "stats_before": {}}}
    (tmp_path / lab5.RESULTS).write_text(json.dumps(broken))
    status, message = verdict(tmp_path, info, "lab5.batching", throughput={}, speedup=1.0)
    assert status == Status.FAIL and "measurement cell again" in message
