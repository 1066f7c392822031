"""Phase 4 with NVIDIA's own tool: genai-perf 0.0.16 (driving perf_analyzer 2.51) against the lab's ensemble.

genai-perf is not part of the course venv: it adds ~0.9 GB (pandas, pyarrow, scipy, statsmodels, plotly, kaleido, ...)
for one optional tool. It resolves and runs under the course's pins too (numpy 1.26.4), but a venv of its own, once,
keeps the course's lock small:

    python3 -m venv ~/.venvs/genai-perf && ~/.venvs/genai-perf/bin/pip install genai-perf==0.0.16

then, with the lab's server running:

    result = run_genai_perf(server.grpc_url, tokenizer=engine_dir, genai_perf="~/.venvs/genai-perf", concurrency=4)
    result.metrics                # genai-perf's own figures, in client.llm_metrics' shape
    llm_metrics(result.records)   # our definitions on perf_analyzer's timestamps, counting the engine's tokens

genai-perf (``--backend tensorrtllm --endpoint-type kserve --streaming``) sends text_input, max_tokens, stream and
exclude_input_in_output (the ensemble accepts all four) and ``ignore_eos`` through ``--extra-inputs``. It runs the
course's perf_analyzer (tritonclient 2.51.0, found like :func:`tritonlab.bench.perf_analyzer.find_perf_analyzer`),
put first on its PATH. It counts output tokens by re-tokenizing the streamed text, not by counting tokens: on this
engine that differs from the true count (see ``output_sequence_length``), so its ITL and tokens/s differ a little
from ours on the same timestamps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonlab.bench.perf_analyzer import find_perf_analyzer
from tritonlab.bench.stats import host_port
from tritonlab.engine.serving.client import ENSEMBLE, StreamRecord
from tritonlab.errors import EnvironmentProblem, TritonLabError

VERSION = "0.0.16"
# genai-perf's JSON statistics -> the keys client.llm_metrics uses
_STAT_KEYS = ("avg", "min", "max", "p50", "p90", "p99", "std")
_DISTRIBUTIONS = ("time_to_first_token", "inter_token_latency", "request_latency", "output_sequence_length")


def install_command(venv: str | Path = "~/.venvs/genai-perf") -> str:
    return f"python3 -m venv {venv} && {venv}/bin/pip install genai-perf=={VERSION}"


def find_genai_perf(where: str | Path | None = None) -> Path:
    """The genai-perf executable: ``where`` (a venv or the executable), else $TRITONLAB_GENAI_PERF, else PATH."""
    where = where or os.environ.get("TRITONLAB_GENAI_PERF")
    if where:
        path = Path(where).expanduser()
        for candidate in (path / "bin" / "genai-perf", path):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        raise EnvironmentProblem(
            f"no genai-perf at {path} (looked for {path}/bin/genai-perf and {path} itself)",
            fix=f"install it in its own venv: {install_command(path)}",
        )
    found = shutil.which("genai-perf")
    if found:
        return Path(found)
    raise EnvironmentProblem(
        "genai-perf is not installed (the course venv does not include it)",
        fix=f"{install_command()}, then pass genai_perf='~/.venvs/genai-perf' or set TRITONLAB_GENAI_PERF",
    )


@dataclass
class GenaiPerfResult:
    metrics: dict[str, Any]  # genai-perf's figures, shaped like client.llm_metrics
    records: list[StreamRecord]  # perf_analyzer's timestamps per request (for client.llm_metrics)
    command: list[str]
    export_dir: Path | None  # profile_export*.json/.csv and inputs.json; None when they were in a temporary dir
    raw: dict[str, Any] = field(repr=False, default_factory=dict)  # profile_export_genai_perf.json as written
    output: str = field(repr=False, default="")  # genai-perf's console output (its table)


def hf_tokenizer_dir(source: str | Path, dest: Path) -> Path:
    """A directory ``transformers.AutoTokenizer`` loads (what genai-perf's --tokenizer needs).

    A model directory from ``make_llama`` already is one; an engine directory has only ``tokenizer.json``, so
    write ``tokenizer_config.json`` beside a copy, naming the special tokens the way ``make_llama`` does.
    """
    source = Path(source)
    if (source / "tokenizer_config.json").exists():
        return source
    if not (source / "tokenizer.json").exists():
        raise TritonLabError(
            f"{source} has no tokenizer.json", fix="pass the engine directory or the model directory (make_llama)"
        )
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_file=str(source / "tokenizer.json"), unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(dest)
    return dest


def run_genai_perf(
    grpc_url: str,
    *,
    tokenizer: str | Path,
    genai_perf: str | Path | None = None,
    model: str = ENSEMBLE,
    concurrency: int = 4,
    input_tokens: int = 16,
    output_tokens: int = 32,
    request_count: int = 40,
    warmup_requests: int | None = None,
    ignore_eos: bool = True,
    seed: int = 0,
    artifact_dir: str | Path | None = None,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 900,
) -> GenaiPerfResult:
    """``genai-perf profile`` at one concurrency against ``grpc_url``; its report read back.

    ``tokenizer``: the engine or model directory (genai-perf makes its prompts and counts tokens with it).
    ``artifact_dir`` keeps genai-perf's files (default: a temporary directory, removed afterwards).
    ``warmup_requests`` (unmeasured, default: ``concurrency``) must be 0 or at least ``concurrency``: perf_analyzer
    2.51 streaming with fewer warm-up requests than concurrency never finished here (``--warmup-request-count 2
    --concurrency-range 4 --request-count 12`` kept sending requests, 1,235 of them in 4 minutes).
    """
    warmup_requests = concurrency if warmup_requests is None else warmup_requests
    if 0 < warmup_requests < concurrency:
        raise TritonLabError(
            f"warmup_requests={warmup_requests} is below concurrency={concurrency}: perf_analyzer 2.51 never stops",
            fix=f"use warmup_requests=0 or at least {concurrency}",
        )
    executable = find_genai_perf(genai_perf)
    host, port = host_port(grpc_url)
    with tempfile.TemporaryDirectory(prefix="tritonlab-genai-perf-") as tmp:
        work = Path(artifact_dir) if artifact_dir else Path(tmp) / "artifacts"
        work.mkdir(parents=True, exist_ok=True)
        tokenizer_dir = hf_tokenizer_dir(tokenizer, work / "tokenizer")
        command = [
            str(executable), "profile", "-m", model, "--backend", "tensorrtllm", "--endpoint-type", "kserve",
            "--streaming", "-u", f"{host}:{port}", "--concurrency", str(concurrency),
            "--synthetic-input-tokens-mean", str(input_tokens), "--synthetic-input-tokens-stddev", "0",
            "--output-tokens-mean", str(output_tokens), "--tokenizer", str(tokenizer_dir),
            "--request-count", str(request_count), "--random-seed", str(seed),
            "--artifact-dir", str(work / "genai-perf"),
        ]  # fmt: skip
        if warmup_requests:
            command += ["--warmup-request-count", str(warmup_requests)]
        if ignore_eos:  # every request produces exactly output_tokens tokens, like client.stream_load's default
            command += ["--extra-inputs", "ignore_eos:true"]
        command += list(extra_args)
        output = _run(command, timeout_s)
        exports = sorted((work / "genai-perf").glob("*/profile_export_genai_perf.json"))
        if not exports:
            raise TritonLabError(
                f"genai-perf wrote no profile_export_genai_perf.json under {work / 'genai-perf'}",
                fix="run the command yourself to see all its output: " + " ".join(command),
            )
        export_dir = exports[-1].parent
        raw = json.loads(exports[-1].read_text())
        records = records_from_profile_export(export_dir / "profile_export.json")
        kept = export_dir if artifact_dir else None
        return GenaiPerfResult(read_genai_perf(raw, records), records, command, kept, raw, output)


def _run(command: list[str], timeout_s: float) -> str:
    # genai-perf calls `perf_analyzer` from PATH: put the course's 2.51 binary first.
    with tempfile.TemporaryDirectory(prefix="tritonlab-pa-bin-") as bindir:
        (Path(bindir) / "perf_analyzer").symlink_to(find_perf_analyzer())
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        # Its own session: on a timeout the perf_analyzer it started goes too (else it keeps loading the server).
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TritonLabError(
                f"genai-perf did not finish within {timeout_s:.0f} s",
                fix="lower request_count, or check that the server answers (server.logs())",
            ) from None
    output = stdout + stderr
    if process.returncode != 0:
        line = _error_line(output)
        fix = "run the command yourself to see all its output: " + " ".join(command)
        if "is not found in the model configuration" in output:
            fix = (
                "the model lacks an input genai-perf sends for --backend tensorrtllm: serve a repository written by "
                "tritonlab.engine.serving.prepare_repository (its ensemble accepts stream and exclude_input_in_output)"
            )
        raise TritonLabError(f"genai-perf failed (exit {process.returncode}): {line}", fix=fix)
    return output


def _error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in (r"^error:", r"ERROR|Error:", r"(?i)failed|exception"):
        found = next((line for line in lines if re.search(pattern, line)), None)
        if found:
            return found
    return lines[-1] if lines else "(no output)"


def records_from_profile_export(path: str | Path) -> list[StreamRecord]:
    """perf_analyzer's per-request timestamps (ns) as ``StreamRecord``s (s), with the engine's own token ids.

    Times are seconds since the first request was sent (epoch nanoseconds as a float would lose ~0.2 us).
    """
    data = json.loads(Path(path).read_text())
    origin = min((r["timestamp"] for e in data["experiments"] for r in e["requests"]), default=0)
    records = []
    for experiment in data["experiments"]:
        for index, request in enumerate(experiment["requests"]):
            inputs = request.get("request_inputs", {})
            outputs = request.get("response_outputs", [])
            record = StreamRecord(
                prompt=str(inputs.get("text_input", "")), max_tokens=int(inputs.get("max_tokens", 0) or 0),
                request_id=f"perf_analyzer-{index}", sent=(request["timestamp"] - origin) / 1e9,
                token_times=[(t - origin) / 1e9 for t in request.get("response_timestamps", [])],
                texts=[str(out.get("text_output", "")) for out in outputs],
            )  # fmt: skip
            for out in outputs:
                ids = out.get("output_ids", [])
                record.token_ids.extend(int(i) for i in (ids if isinstance(ids, list) else [ids]))
            if not record.token_times:
                record.error = "no response"
            records.append(record)
    return records


def read_genai_perf(raw: dict[str, Any], records: list[StreamRecord] | None = None) -> dict[str, Any]:
    """``profile_export_genai_perf.json`` in ``client.llm_metrics``' shape (ms, tokens/s, requests/s).

    ``failed`` and ``duration_s`` come from perf_analyzer's records when given (genai-perf reports neither).
    """
    metrics: dict[str, Any] = {
        name: {key: float(raw[name][key]) for key in _STAT_KEYS if key in raw.get(name, {})} for name in _DISTRIBUTIONS
    }
    metrics["output_token_throughput"] = float(raw["output_token_throughput"]["avg"])
    metrics["request_throughput"] = float(raw["request_throughput"]["avg"])
    metrics["requests"] = int(raw["request_count"]["avg"])
    metrics["input_sequence_length"] = {
        k: float(v) for k, v in raw.get("input_sequence_length", {}).items() if k in _STAT_KEYS
    }
    if records is not None:
        done = [r for r in records if not r.error]
        metrics["failed"] = len(records) - len(done)
        metrics["duration_s"] = max(r.token_times[-1] for r in done) - min(r.sent for r in done) if done else 0.0
    return metrics
