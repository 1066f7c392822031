"""genai-perf 0.0.16 itself (driving the course's perf_analyzer 2.51) against a real Triton serving the session's
engine, and the ensemble's answers to the extra inputs it sends.

genai-perf is kept out of the course venv (it adds ~0.9 GB of packages the course does not otherwise need): the
``genai_perf_venv`` fixture installs it from PyPI, under the course's constraints (numpy 1.26.4 etc.; genai-perf
resolves and runs with them), into its own venv under the user cache (``~/.cache/tritonlab-tests/genai-perf-0.0.16``,
about 3 minutes the first time on 2 cores, reused afterwards). CI (a fresh machine with PyPI) pays that once per run.
Where the install fails and CI is not set, the genai-perf test is skipped with pip's error; in CI it fails.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tritonlab.engine.serving import prepare_repository
from tritonlab.engine.serving.client import llm_metrics
from tritonlab.engine.serving.genai_perf import VERSION, find_genai_perf, hf_tokenizer_dir, run_genai_perf
from tritonlab.errors import EnvironmentProblem, TritonLabError
from tritonlab.server import start_server

VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tritonlab-tests" / f"genai-perf-{VERSION}"
# The course's pins (numpy 1.26.4, transformers, tokenizers, ...) apply where genai-perf shares a dependency.
CONSTRAINTS = Path(__file__).resolve().parents[2] / "env" / "constraints.txt"


@pytest.fixture(scope="module")
def genai_perf_venv() -> Path:
    from filelock import FileLock

    VENV.parent.mkdir(parents=True, exist_ok=True)
    done_marker = VENV / "tritonlab-installed"
    spec = f"genai-perf=={VERSION} -c {CONSTRAINTS} ({hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:12]})"
    with FileLock(str(VENV) + ".lock"):  # another pytest on this machine may be installing it
        if not done_marker.exists() or done_marker.read_text().strip() != spec:
            shutil.rmtree(VENV, ignore_errors=True)  # a partial install from an interrupted run
            pip = [str(VENV / "bin" / "pip"), "install", "-q", f"genai-perf=={VERSION}", "-c", str(CONSTRAINTS)]
            steps = ([sys.executable, "-m", "venv", str(VENV)], pip)
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    message = f"cannot install genai-perf: {' '.join(step)}: {(done.stderr or done.stdout)[-800:]}"
                    if os.environ.get("CI"):
                        pytest.fail(message)
                    pytest.skip(message)
            done_marker.write_text(spec + "\n")
    return VENV


@pytest.fixture(scope="module")
def llm_server(engine_dir, tmp_path_factory) -> Iterator:
    repo = prepare_repository(engine_dir, tmp_path_factory.mktemp("repo-genai"), step_log=False)
    with start_server(repo) as server:
        yield server


def test_missing_genai_perf_names_the_install_command(tmp_path):
    with pytest.raises(EnvironmentProblem, match="no genai-perf at") as info:
        find_genai_perf(tmp_path / "nowhere")
    assert f"pip install genai-perf=={VERSION}" in info.value.fix


def test_fewer_warmup_requests_than_concurrency_is_refused(tmp_path):
    # perf_analyzer 2.51 never stopped with --warmup-request-count 2 at --concurrency-range 4 (kept streaming requests).
    with pytest.raises(TritonLabError, match="warmup_requests=2 is below concurrency=4") as info:
        run_genai_perf("grpc://127.0.0.1:1", tokenizer=tmp_path, genai_perf=tmp_path, concurrency=4, warmup_requests=2)
    assert "at least 4" in info.value.fix


def test_engine_tokenizer_becomes_an_auto_tokenizer_dir(engine_dir, tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    made = hf_tokenizer_dir(engine_dir, tmp_path / "tok")
    text = "the server streams tokens"
    ids = Tokenizer.from_file(str(engine_dir / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    assert AutoTokenizer.from_pretrained(made).encode(text, add_special_tokens=False) == ids


def _stream(server, **flags: bool) -> tuple[object, object]:
    import tritonclient.grpc as grpcclient

    def tensor(name, dtype, value):
        t = grpcclient.InferInput(name, [1], dtype)
        t.set_data_from_numpy(np.array([value], dtype={"BYTES": np.object_, "INT32": np.int32, "BOOL": bool}[dtype]))
        return t

    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url.split("://")[-1])
    try:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        inputs = [tensor("text_input", "BYTES", b"hello"), tensor("max_tokens", "INT32", 2)]
        inputs += [tensor(name, "BOOL", value) for name, value in flags.items()]
        client.async_stream_infer("ensemble", inputs)
        answer = answers.get(timeout=60)
        client.stop_stream()
    finally:
        client.close()
    return answer


@pytest.mark.parametrize("flag", ["stream", "exclude_input_in_output"])
def test_genai_perf_flags_accepted_true_refused_false(llm_server, flag):
    result, error = _stream(llm_server, **{flag: True})
    assert error is None and result.as_numpy("output_ids").size == 1
    result, error = _stream(llm_server, **{flag: False})
    assert result is None and f"{flag}=false is not supported" in str(error)


@pytest.mark.timeout(1200)  # includes the first install of genai-perf into its venv
def test_genai_perf_profiles_the_ensemble(genai_perf_venv, llm_server, engine_dir, tmp_path):
    from transformers import AutoTokenizer

    result = run_genai_perf(
        llm_server.grpc_url, tokenizer=engine_dir, genai_perf=genai_perf_venv, concurrency=4, input_tokens=12,
        output_tokens=16, request_count=12, artifact_dir=tmp_path,
    )  # fmt: skip
    metrics, records = result.metrics, result.records
    assert "--backend" in result.command and "tensorrtllm" in result.command
    # It sent the tensorrtllm inputs; the ensemble took them and produced exactly max_tokens tokens each (ignore_eos).
    sent = (result.export_dir / "inputs.json").read_text()
    assert '"exclude_input_in_output"' in sent and '"stream"' in sent and '"ignore_eos"' in sent
    assert metrics["requests"] == 12 and metrics["failed"] == 0 and len(records) == 12
    assert all(len(r.token_times) == 16 == len(r.token_ids) and r.max_tokens == 16 for r in records)
    assert 11 <= metrics["input_sequence_length"]["avg"] <= 13
    # Our definitions on perf_analyzer's timestamps give genai-perf's TTFT, latency and request throughput.
    ours = llm_metrics(records)
    for name in ("time_to_first_token", "request_latency"):
        assert metrics[name]["avg"] == pytest.approx(ours[name]["avg"], rel=1e-6)
        assert metrics[name]["p50"] == pytest.approx(ours[name]["p50"], rel=1e-6)
    assert metrics["request_throughput"] == pytest.approx(ours["request_throughput"], rel=1e-6)
    # Its output lengths are the streamed text re-tokenized, not the tokens streamed.
    tokenizer = AutoTokenizer.from_pretrained(hf_tokenizer_dir(engine_dir, tmp_path / "tok"))
    counts = [len(tokenizer.encode("".join(r.texts), add_special_tokens=False)) for r in records]
    assert metrics["output_sequence_length"]["avg"] == pytest.approx(statistics.fmean(counts))
    assert metrics["output_token_throughput"] == pytest.approx(sum(counts) / ours["duration_s"], rel=1e-6)
    itl = [(r.latency - r.ttft) / (n - 1) * 1e3 for r, n in zip(records, counts, strict=True)]
    assert metrics["inter_token_latency"]["avg"] == pytest.approx(statistics.fmean(itl), rel=1e-6)
