"""Phase 2 and 3 on a GPU (skipped without CUDA; run on the H200 by bench/device/h200_llm.sh): a real CUDA
AOTInductor build whose config.json names the GPU, its own cache key, the engine generating what transformers
generates on the same GPU, the refusal on the CPU, and Triton serving it from a KIND_GPU instance."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from tritonlab.engine import runtime
from tritonlab.engine.build import ENGINE_FILE, BuildLimits, build_engine, build_key, engine_config, load_engine
from tritonlab.errors import TritonLabError

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the H200)")
LIMITS = {"max_batch_size": 4, "max_input_len": 32, "max_seq_len": 256}


@pytest.fixture(scope="module")
def gpu_build(checkpoint_dir):
    return build_engine(checkpoint_dir, checkpoint_dir.parent / "engine-cuda", **LIMITS, device="cuda", progress=False)


def test_config_records_the_gpu(gpu_build):
    device = engine_config(gpu_build.engine_dir)["device"]
    major, minor = torch.cuda.get_device_capability(0)
    assert device["device_class"] == "cuda" and device["gpu_name"] == torch.cuda.get_device_name(0)
    assert device["compute_capability"] == f"{major}.{minor}" and device["cuda"] == torch.version.cuda
    assert device["torch"] == torch.__version__ and "cpu_capability" not in device
    assert gpu_build.key.startswith(f"cuda-sm{major}{minor}-")


def test_package_holds_gpu_code(gpu_build):
    with zipfile.ZipFile(gpu_build.engine_dir / ENGINE_FILE) as package:
        names = package.namelist()
    assert any(n.endswith(".so") for n in names), names
    # Inductor's Triton kernels, compiled for this GPU, travel in the package as cubins.
    assert any(n.endswith(".cubin") for n in names), names


def test_gpu_and_cpu_builds_have_different_keys(checkpoint_dir, gpu_build):
    cpu_key = build_key(checkpoint_dir, BuildLimits(**LIMITS), runtime.device_record("cpu"))
    assert cpu_key != gpu_build.key and cpu_key.startswith("cpu-")
    again = build_engine(checkpoint_dir, None, **LIMITS, device="cuda", progress=False)
    assert again.cache_hit and again.key == gpu_build.key


def test_gpu_engine_is_refused_on_the_cpu(gpu_build):
    with pytest.raises(TritonLabError, match="device_class: built for 'cuda', this machine has 'cpu'") as info:
        load_engine(gpu_build.engine_dir, device="cpu")
    assert "compute_capability: built for" in info.value.message
    assert "build the engine again" in info.value.fix


def test_cpu_engine_is_refused_on_the_gpu(engine_dir):
    with pytest.raises(TritonLabError, match="device_class: built for 'cpu', this machine has 'cuda'"):
        load_engine(engine_dir, device="cuda")


def _transformers_on_gpu(llama_dir: Path, prompt: list[int], max_tokens: int) -> list[int]:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(llama_dir).eval().to("cuda")
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt], device="cuda"), max_new_tokens=max_tokens, do_sample=False, eos_token_id=None
        )
    return out[0, len(prompt) :].tolist()


def test_triton_serves_the_gpu_engine_from_a_gpu_instance(gpu_build, llama_dir, tmp_path: Path):
    from tokenizers import Tokenizer

    from tritonlab.engine.serving import LLM, prepare_repository
    from tritonlab.engine.serving.client import stream_generate, stream_load
    from tritonlab.server import start_server

    engine_dir = gpu_build.engine_dir
    repo = prepare_repository(engine_dir, tmp_path / "repo", batching_strategy="inflight")
    assert "KIND_GPU" in (repo / LLM / "config.pbtxt").read_text()
    prompt = Tokenizer.from_file(str(engine_dir / "tokenizer.json")).encode("once upon a time").ids
    reference = _transformers_on_gpu(llama_dir, prompt, 16)
    with start_server(repo) as server:
        record = stream_generate(server.grpc_url, "once upon a time", max_tokens=16)
        many = stream_load(server.grpc_url, [("once upon a time", 16)] * 8, concurrency=8)
        log = server.logs()
    assert record.token_ids == reference
    assert all(r.token_ids == reference and not r.error for r in many)
    assert "on cuda:0 (inflight batching" in log  # the llm model's own line: engine and KV cache on the GPU


def test_gpu_engine_generates_like_transformers_in_this_process(gpu_build, llama_dir):
    """Load and run the engine in a plain Python process (a notebook's): a child process, so a crash inside the
    compiled package fails this test instead of the whole session."""
    import subprocess
    import sys

    from tokenizers import Tokenizer

    engine_dir = gpu_build.engine_dir
    prompt = Tokenizer.from_file(str(engine_dir / "tokenizer.json")).encode("once upon a time").ids
    code = (
        "import json, sys; from tritonlab.engine.build import load_engine; "
        f"e = load_engine({str(engine_dir)!r}); "
        "assert e.device.type == 'cuda' and e.k_cache.is_cuda and e.v_cache.is_cuda; "
        f"print('TOKENS', json.dumps(e.generate({prompt!r}, 24, slot=1)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    tokens = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("TOKENS ")).removeprefix("TOKENS "))
    assert tokens == _transformers_on_gpu(llama_dir, prompt, 24)
