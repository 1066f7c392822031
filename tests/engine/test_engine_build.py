"""Phase 2 with a real AOTInductor build (one per session, see conftest): limits and device in config.json,
refusal elsewhere, the content-hash cache, and the compiled engine generating what transformers generates."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import statistics
import sys
import threading
import time
import zipfile

import pytest
import torch
from batcher_streams import Streams

from tritonlab.engine import runtime
from tritonlab.engine.build import ENGINE_FILE, build_engine, engine_config, load_engine
from tritonlab.errors import TritonLabError


def test_config_records_limits_and_device(engine_dir):
    config = engine_config(engine_dir)
    limits = {"max_batch_size": 4, "max_input_len": 32, "max_seq_len": 256, "max_num_tokens": 4 * 32}
    assert config["build_config"] == limits
    device = config["device"]
    assert device == runtime.device_record()
    assert device["device_class"] == "cpu" and device["torch"] == torch.__version__
    assert device["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_engine_is_a_compiled_package(engine_dir):
    with zipfile.ZipFile(engine_dir / ENGINE_FILE) as package:
        names = package.namelist()
    assert any(n.endswith(".so") for n in names), "no compiled shared object in the AOTInductor package"
    assert any(n.endswith((".cpp", ".wrapper.cpp")) or "/aotinductor/" in n for n in names)


def test_compiled_engine_generates_like_transformers(engine_dir, llama_dir):
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    prompt = Tokenizer.from_file(str(engine_dir / "tokenizer.json")).encode("once upon a time").ids
    model = LlamaForCausalLM.from_pretrained(llama_dir).eval()
    reference = model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, eos_token_id=None)
    engine = load_engine(engine_dir, num_threads=1)
    assert engine.generate(prompt, 24, slot=2) == reference[0, len(prompt) :].tolist()


def test_cpu_step_computes_what_the_package_loader_computes(engine_dir):
    engine = load_engine(engine_dir, num_threads=1)
    assert isinstance(engine._step, runtime.CpuStep)
    loader = torch._inductor.aoti_load_package(str(engine_dir / ENGINE_FILE))
    torch.manual_seed(0)
    engine.k_cache.normal_()
    engine.v_cache.normal_()
    ids, start, slots = torch.randint(0, 100, (3, 1)), torch.tensor([7, 40, 99]), torch.tensor([2, 0, 3])
    window = torch.arange(100)
    with torch.inference_mode():
        ours = engine._step(ids, start, slots, engine.k_cache, engine.v_cache, window)
        theirs = loader(ids, start, slots, engine.k_cache, engine.v_cache, window)
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def _spinner_during(run_steps) -> tuple[float, float]:
    """(longest gap between two iterations of a spinning Python thread, its share of the wall time it got) while
    run_steps runs: a gap is time the thread could not get the GIL."""
    ticks: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.05)
    begin = time.perf_counter()
    run_steps()
    end = time.perf_counter()
    stop.set()
    spinner.join()
    during = [t for t in ticks if begin <= t <= end]
    gaps = [b - a for a, b in itertools.pairwise([begin, *during, end])]
    blocked = sum(g for g in gaps if g > 0.0005)  # a spin iteration takes microseconds: longer is waiting for the GIL
    return max(gaps), 1 - blocked / (end - begin)


def test_cpu_step_lets_other_python_threads_run(engine_dir):
    """The Triton model sends the previous step's tokens from another thread while a step computes: that thread must
    get the GIL during the step. With the package loader's binding it cannot (the control that shows this test can
    fail), with CpuStep it can."""
    engine = load_engine(engine_dir, num_threads=1)
    loader = torch._inductor.aoti_load_package(str(engine_dir / ENGINE_FILE))
    args = (torch.zeros(4, 1, dtype=torch.int64), torch.full((4,), 254), torch.arange(4), engine.k_cache,
            engine.v_cache, torch.arange(256))  # fmt: skip

    def steps_with(step):
        def run() -> None:
            with torch.inference_mode():
                for _ in range(20):
                    step(*args)

        return run

    with torch.inference_mode():
        alone = statistics.median(_seconds(lambda: loader(*args)) for _ in range(10))  # one step, no other thread
        engine._step(*args)  # its first call sets up once: not what a serving loop's steps look like
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # the main thread takes the GIL back within 1 ms after each step, both cases
    try:
        blocked_gap, blocked_share = _spinner_during(steps_with(loader))
        free_gap, free_share = _spinner_during(steps_with(engine._step))
    finally:
        sys.setswitchinterval(interval)
    # The control: the loader holds the GIL for a whole step, the other thread runs only between steps.
    assert blocked_gap >= 0.8 * alone and blocked_share < 0.4, (blocked_gap, alone, blocked_share)
    # CpuStep: the other thread runs through the steps (here 0.97-1.0 of the time, the loader's 0.16). Its longest
    # gap is no measure: one preemption by the OS can be as long as a step.
    assert free_share > 0.6 and free_share > 2 * blocked_share, (free_gap, free_share, blocked_share)


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_cache_hit_is_near_instant(checkpoint_dir, engine_build, tmp_path):
    assert not engine_build.cache_hit  # the session's first build compiled for real
    start = time.perf_counter()
    again = build_engine(
        checkpoint_dir, tmp_path / "engine", max_batch_size=4, max_input_len=32, max_seq_len=256, progress=False
    )
    assert again.cache_hit and again.key == engine_build.key
    assert time.perf_counter() - start < 3.0
    assert (tmp_path / "engine" / ENGINE_FILE).read_bytes() == (engine_build.engine_dir / ENGINE_FILE).read_bytes()


def test_other_limits_are_another_key(checkpoint_dir, engine_build):
    from tritonlab.engine.build import BuildLimits, build_key

    other = build_key(checkpoint_dir, BuildLimits(4, 32, 128), runtime.device_record())
    assert other != engine_build.key


@pytest.mark.parametrize(
    ("key", "value"),
    [("cpu_capability", "another"), ("device_class", "cuda"), ("torch", "2.9.0+cu128"), ("arch", "aarch64")],
)
def test_engine_from_another_device_is_refused(engine_dir, tmp_path, key, value):
    moved = tmp_path / "moved"
    shutil.copytree(engine_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    if value == "another":  # a vector ISA this CPU does not have (machines here differ: AVX2 on some, AVX512 on others)
        value = "AVX2" if config["device"][key] == "AVX512" else "AVX512"
    config["device"][key] = value
    (moved / "config.json").write_text(json.dumps(config))
    # On this CPU (named: on a GPU machine a device_class "cuda" engine would otherwise be tried on its GPU).
    with pytest.raises(TritonLabError, match=re.escape(f"{key}: built for {value!r}")) as info:
        load_engine(moved, device="cpu")
    assert "build the engine again" in info.value.fix


def test_kv_cache_size_follows_the_formula(engine_dir):
    engine = load_engine(engine_dir, num_threads=1)
    pretrained = engine_config(engine_dir)["pretrained_config"]
    per_token = 2 * pretrained["num_hidden_layers"] * pretrained["num_key_value_heads"] * pretrained["head_size"] * 4
    assert engine.kv_bytes_per_token == per_token
    assert engine.kv_cache_bytes == per_token * 256 * 4 == engine.k_cache.nbytes + engine.v_cache.nbytes


def test_request_limits(engine_dir):
    engine = load_engine(engine_dir, num_threads=1)
    with pytest.raises(runtime.LimitError, match="max_input_len=32"):
        engine.check_request(33, 1)
    with pytest.raises(runtime.LimitError, match="max_seq_len=256"):
        engine.check_request(10, 247)
    engine.check_request(10, 246)  # exactly at the limit fits


def test_a_slot_outside_the_cache_is_an_error_not_an_abort(engine_dir):
    # The compiled step would index past the cache and abort this very process (pytest with it) instead of raising.
    engine = load_engine(engine_dir, num_threads=1)
    with pytest.raises(runtime.LimitError, match=r"max_batch_size=4 slots, 0 to 3"):
        engine.generate([5, 6, 7], 2, slot=4)
    with pytest.raises(runtime.LimitError, match="max_batch_size=4"):
        engine.decode([0, 1, 2, 3, 0], [5] * 5, [3] * 5)  # more rows than slots
    with pytest.raises(runtime.LimitError, match="max_seq_len=256"):
        engine.decode([0], [5], [256])  # no position left for the new token
    assert len(engine.generate([5, 6, 7], 2, slot=3)) == 2  # and the engine still serves


def test_a_prompt_joining_a_running_step_generates_what_it_would_alone(engine_dir):
    """A packed step (runtime.Engine.run): a new prompt and a running sequence's next token in one call, each
    sequence's tokens exactly those it generates alone."""
    engine = load_engine(engine_dir, num_threads=1)
    a_prompt, b_prompt = [5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]
    a_alone, b_alone = engine.generate(a_prompt, 12, slot=2), engine.generate(b_prompt, 8, slot=2)
    a = engine.prefill([0], [a_prompt])
    for _ in range(3):
        a += engine.decode([0], [a[-1]], [len(a_prompt) + len(a) - 1])
    b: list[int] = []
    while len(b) < 8:
        step = engine.run(
            [0, 3],
            [[a[-1]], [b[-1]] if b else b_prompt],
            [len(a_prompt) + len(a) - 1, len(b_prompt) + len(b) - 1 if b else 0],
        )
        a.append(step[0])
        b.append(step[1])
    assert (a, b) == (a_alone, b_alone)


def test_packed_step_limits(engine_dir):
    engine = load_engine(engine_dir, num_threads=1)
    assert engine.packed and engine.max_num_tokens == 4 * 32
    with pytest.raises(runtime.LimitError, match="max_num_tokens=128"):
        engine.run([0, 1, 2, 3], [[1] * 32, [1] * 32, [1] * 32, [1] * 33], [0, 0, 0, 0])
    with pytest.raises(runtime.LimitError, match="a different one per running sequence"):
        engine.run([1, 1], [[5], [6]], [3, 4])
    with pytest.raises(runtime.LimitError, match="at least one per sequence"):
        engine.run([0, 1], [[5], []], [3, 0])
    with pytest.raises(runtime.LimitError, match="max_seq_len=256"):
        engine.run([0], [[5, 6]], [255])
    alone = [engine.generate([5, 6, 7], 1)[0], engine.generate([8], 1)[0]]
    assert engine.run([0, 1], [[5, 6, 7], [8]], [0, 0]) == alone


def test_inflight_batcher_admits_into_the_running_step(engine_dir):
    """Requests arriving while others run join the next step itself (one call with their prompts and the running
    tokens) and still generate exactly what they generate alone."""
    from tritonlab.engine.runtime import Batcher

    engine = load_engine(engine_dir, num_threads=1)
    streams = Streams({"r0": [5, 6, 7], "r1": [9, 10, 11, 12, 13], "r2": [20, 21]}, max_tokens=24)
    alone = {rid: engine.generate(p, 24) for rid, p in streams.prompts.items()}
    events: list[dict] = []
    batcher = Batcher(engine, "inflight", trace=events.append).start()

    def join_after_third_token(n: int) -> None:
        # Submitted from the batcher's own thread between two steps, so r0 is certainly still running when
        # r1 and r2 arrive (polling from here lost that race on a busy 2-core machine: r0 had finished).
        if n == 3:
            batcher.submit(streams.sequence("r1"))
            batcher.submit(streams.sequence("r2"))

    batcher.submit(streams.sequence("r0", on_token=join_after_third_token))
    streams.wait()
    batcher.stop()
    assert streams.got == alone
    joined = [e for e in events if e["event"] == "step" and e["admitted"] and e["batch"] > e["admitted"]]
    assert joined and "r0" in joined[0]["ids"], "no step had both a running sequence and a new prompt"


def test_build_limit_errors(checkpoint_dir, tmp_path):
    with pytest.raises(TritonLabError, match="max_input_len=64 is larger than max_seq_len=32"):
        build_engine(checkpoint_dir, tmp_path / "e", max_input_len=64, max_seq_len=32, progress=False)
    with pytest.raises(TritonLabError, match="max_position_embeddings"):
        build_engine(checkpoint_dir, tmp_path / "e", max_seq_len=100_000, progress=False)
    with pytest.raises(TritonLabError, match="not a converted checkpoint"):
        build_engine(tmp_path, tmp_path / "e", progress=False)


def test_stopping_the_batcher_ends_every_running_and_queued_request(engine_dir):
    """An unloading model must answer every stream (an error is an answer): no client waits for ever."""
    import threading

    from tritonlab.engine.runtime import Batcher, Sequence

    engine = load_engine(engine_dir, num_threads=1)
    ended: dict[str, str] = {}
    lock = threading.Lock()

    def sequence(i: int) -> Sequence:
        def emit(token: int, final: bool) -> None:
            if final:
                with lock:
                    ended[f"r{i}"] = "finished"

        def fail(message: str) -> None:
            with lock:
                ended[f"r{i}"] = message

        return Sequence(f"r{i}", [1, 2, 3], 200, emit, fail, stop_at_eos=False)

    batcher = Batcher(engine, "inflight").start()
    count = engine.max_batch_size + 3  # some run, the rest wait in the queue
    for i in range(count):
        batcher.submit(sequence(i))
    batcher.stop()
    assert len(ended) == count
    assert any("unloading" in why for why in ended.values())


def test_cpu_and_gpu_builds_never_share_a_cache_key(checkpoint_dir, engine_build):
    """The device record is part of the content hash: a GPU build of the same checkpoint and limits is another key."""
    from tritonlab.engine.build import BuildLimits, build_key

    limits = BuildLimits(4, 32, 256)
    assert build_key(checkpoint_dir, limits, runtime.device_record()) == engine_build.key
    assert engine_build.key.startswith("cpu-")
    h200 = {"device_class": "cuda", "arch": "x86_64", "gpu_name": "NVIDIA H200", "compute_capability": "9.0",
            "cuda": "13.0", "torch": torch.__version__}  # fmt: skip
    h100 = {**h200, "gpu_name": "NVIDIA H100 80GB HBM3"}
    a100 = {**h200, "gpu_name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    keys = {engine_build.key} | {build_key(checkpoint_dir, limits, d) for d in (h200, h100, a100)}
    assert len(keys) == 4
    assert build_key(checkpoint_dir, limits, h200).startswith("cuda-sm90-")
    assert build_key(checkpoint_dir, limits, a100).startswith("cuda-sm80-")


def test_engine_built_on_a_gpu_is_refused_on_this_cpu(engine_dir, tmp_path):
    """An engine whose config.json says it was built on an H200 (sm_90) is refused here, every difference named."""
    moved = tmp_path / "from-h200"
    shutil.copytree(engine_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    config["device"] = {"device_class": "cuda", "arch": "x86_64", "gpu_name": "NVIDIA H200",
                        "compute_capability": "9.0", "cuda": "13.0", "torch": "2.11.0+cu130"}  # fmt: skip
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(TritonLabError) as info:
        load_engine(moved, device="cpu")  # named: a GPU machine would otherwise try its GPU
    message = info.value.message
    assert "device_class: built for 'cuda', this machine has 'cpu'" in message
    assert "compute_capability: built for '9.0', this machine has None" in message
    assert "gpu_name: built for 'NVIDIA H200'" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU (tests/engine/test_engine_gpu.py)")
def test_cuda_without_a_gpu_is_a_clear_error(checkpoint_dir, engine_dir, tmp_path):
    with pytest.raises(TritonLabError, match="no CUDA device torch can use") as info:
        build_engine(checkpoint_dir, tmp_path / "e", device="cuda", progress=False)
    assert "device='cpu'" in info.value.fix
    with pytest.raises(TritonLabError, match="no CUDA device torch can use"):
        load_engine(engine_dir, device="cuda")
    with pytest.raises(TritonLabError, match="device='tpu'"):
        build_engine(checkpoint_dir, tmp_path / "e", device="tpu", progress=False)
