"""The ragged attention kernel (engine/attention.py): compiled here, called through its C shim exactly as the compiled
engine calls it, against the plain-torch reference; and the CPU engine built with it against one built padded."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from batcher_streams import Streams

from tritonlab.engine import attention, runtime
from tritonlab.engine.build import BuildLimits, build_engine, build_key, engine_config, load_engine
from tritonlab.errors import TritonLabError


class Shim:
    """``aoti_torch_cpu_ragged_attention`` from the compiled library, called with AOTInductor tensor handles."""

    lib: ctypes.CDLL

    def __init__(self, library: Path):
        self.lib = ctypes.CDLL(str(library))  # local: the engines loaded later in this process load their own copy

    def __call__(self, *tensors: torch.Tensor) -> tuple[int, torch.Tensor | None]:
        handles = runtime.tensor_handles(tensors)
        out = ctypes.c_void_p()
        code = self.lib.aoti_torch_cpu_ragged_attention(*(ctypes.c_void_p(h) for h in handles), ctypes.byref(out))
        for handle in handles:  # the shim borrows its inputs: their handles are ours to free
            self.lib.aoti_torch_delete_tensor_object(ctypes.c_void_p(handle))
        if code != 0:
            return code, None
        return code, runtime.tensors_from_handles([out.value])[0]


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Shim:
    return Shim(attention.build_kernel(tmp_path_factory.mktemp("kernel")))


def _inputs(dtype: torch.dtype, start: list[int], steps: int, slots: list[int], heads: int = 12, kv_heads: int = 4):
    torch.manual_seed(len(start) * 100 + steps)
    batch, size, positions = len(start), 64, 96
    cache = [torch.randn(6, kv_heads, positions, size).to(dtype) for _ in range(2)]
    q = torch.randn(batch, heads, steps, size)
    k, v = (torch.randn(batch, kv_heads, steps, size).to(dtype) for _ in range(2))
    return q, k, v, *cache, torch.tensor(start), torch.tensor(slots)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("start", "steps", "slots"),
    [
        ([70, 3, 0, 41], 1, [5, 0, 2, 3]),  # a decode step: mixed lengths, one sequence with nothing cached yet
        ([0, 0], 9, [1, 4]),  # a prefill: causal among the new tokens
        ([30, 12], 4, [2, 0]),  # new tokens after a cached prefix
    ],
)
def test_kernel_matches_the_reference(shim, dtype, start, steps, slots):
    inputs = _inputs(dtype, start, steps, slots)
    code, got = shim(*inputs)
    assert code == 0
    expected = attention.ragged_attention(*inputs)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_the_reference_on_packed_rows(shim, dtype):
    """One row per token: a running sequence, a 5-token prompt (slot 0, positions 0-4), another running one, and a
    sequence continuing with 2 new tokens after 5 cached (slot 1)."""
    start, slots = [40, 0, 1, 2, 3, 4, 17, 5, 6], [2, 0, 0, 0, 0, 0, 4, 1, 1]
    inputs = _inputs(dtype, start, 1, slots)
    code, got = shim(*inputs)
    assert code == 0
    torch.testing.assert_close(got, attention.ragged_attention(*inputs), rtol=1e-4, atol=1e-5)


def test_packed_prompt_rows_attend_like_the_prompt_in_one_row(shim):
    """The packed form's meaning: a prompt as consecutive rows of its slot gives each token the attention it gets as
    one row of T tokens (causal among the new tokens), not just what the reference says."""
    q, k, v, k_cache, v_cache, _, _ = _inputs(torch.float32, [0], 7, [3])
    code, whole = shim(q, k, v, k_cache, v_cache, torch.tensor([0]), torch.tensor([3]))
    assert code == 0
    rows = lambda x: x[0].transpose(0, 1)[:, :, None].contiguous()  # [1, H, 7, D] -> [7, H, 1, D]  # noqa: E731
    code, packed = shim(rows(q), rows(k), rows(v), k_cache, v_cache, torch.arange(7), torch.full((7,), 3))
    assert code == 0
    torch.testing.assert_close(packed[:, :, 0], whole[0].transpose(0, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("start", "slots"),
    [([0, 1, 5], [2, 4, 2]), ([0, 2], [1, 1])],  # a slot's rows apart; positions not consecutive
)
def test_kernel_refuses_packed_rows_it_cannot_read_as_one_sequence(shim, capfd, start, slots):
    code, _ = shim(*_inputs(torch.float32, start, 1, slots))
    assert code != 0
    assert "consecutive" in capfd.readouterr().err


def test_kernel_reads_only_each_sequences_own_positions(shim):
    q, k, v, k_cache, v_cache, start, slots = _inputs(torch.float32, [5, 60], 1, [0, 1])
    _, before = shim(q, k, v, k_cache, v_cache, start, slots)
    k_cache[0, :, 5:] = float("nan")  # beyond sequence 0's length: must not be read
    v_cache[0, :, 5:] = float("nan")
    _, after = shim(q, k, v, k_cache, v_cache, start, slots)
    assert torch.equal(before, after)


def test_loading_the_kernel_keeps_the_process_floating_point_mode(tmp_path):
    """A library linked with -ffast-math (GCC < 13) switches the whole process to flush-to-zero when it loads; the
    kernel is compiled with it but linked without. Checked in a fresh process, as the engine loads it."""
    library = attention.build_kernel(tmp_path)
    code = (
        "import ctypes, os, sys, torch; tiny = torch.tensor([1e-39]); "
        "ctypes.CDLL(sys.argv[1], mode=os.RTLD_GLOBAL); print((tiny * 1.0).item())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(library)], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 0, "loading the kernel flushed a denormal float to zero"


def test_kernel_refuses_what_would_read_outside_the_cache(shim, capfd):
    q, k, v, k_cache, v_cache, _, _ = _inputs(torch.float32, [0], 1, [0])
    code, _ = shim(q, k, v, k_cache, v_cache, torch.tensor([96]), torch.tensor([0]))  # position 96 of 96
    assert code != 0
    code, _ = shim(q, k, v, k_cache, v_cache, torch.tensor([3]), torch.tensor([6]))  # slot 6 of 6
    assert code != 0
    code, _ = shim(q, k.double(), v, k_cache, v_cache, torch.tensor([3]), torch.tensor([0]))
    assert code != 0
    err = capfd.readouterr().err
    assert "slot or position out of range" in err and "share one dtype" in err


def test_cpu_engine_is_built_with_the_kernel(engine_dir):
    assert engine_config(engine_dir)["attention"] == "ragged"
    assert (engine_dir / runtime.KERNEL_LIBRARY).exists()


@pytest.fixture(scope="module")
def padded_engine_dir(checkpoint_dir, engine_build) -> Path:
    built_with = engine_config(engine_build.engine_dir)["build_config"]
    limits = {k: built_with[k] for k in ("max_batch_size", "max_input_len", "max_seq_len")}
    built = build_engine(checkpoint_dir, None, attention="padded", progress=False, **limits)
    assert built.key != engine_build.key
    return built.engine_dir


def test_ragged_engine_steps_like_the_padded_one(engine_dir, padded_engine_dir):
    """The same decode step of mixed lengths through both compiled engines: the kernel changes the work, not the
    numbers."""
    ragged, padded = load_engine(engine_dir, num_threads=1), load_engine(padded_engine_dir, num_threads=1)
    assert engine_config(padded_engine_dir)["attention"] == "padded"
    assert not (padded_engine_dir / runtime.KERNEL_LIBRARY).exists()
    torch.manual_seed(1)
    ragged.k_cache.normal_()
    ragged.v_cache.normal_()
    padded.k_cache.copy_(ragged.k_cache)
    padded.v_cache.copy_(ragged.v_cache)
    ids, start, slots = torch.randint(0, 100, (4, 1)), torch.tensor([200, 3, 57, 0]), torch.tensor([1, 3, 0, 2])
    window = torch.arange(201)
    with torch.inference_mode():
        ours = ragged._step(ids, start, slots, ragged.k_cache, ragged.v_cache, window)
        theirs = padded._step(ids, start, slots, padded.k_cache, padded.v_cache, window)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    prompt = [1, 17, 42, 9, 300, 5]
    assert ragged.generate(prompt, 30, slot=1) == padded.generate(prompt, 30, slot=1)


def test_padded_engine_batches_in_separate_calls(padded_engine_dir):
    """A padded engine (the GPU's form, built here for the CPU) takes no packed step: the in-flight loop prefills new
    requests in a call of their own, and every request still gets the tokens it generates alone."""
    from tritonlab.engine.runtime import Batcher, LimitError

    engine = load_engine(padded_engine_dir, num_threads=1)
    assert not engine.packed
    with pytest.raises(LimitError, match="use prefill/decode"):
        engine.run([0], [[5, 6]], [0])
    streams = Streams({"a": [5, 6, 7], "b": [9, 10, 11, 12, 13]}, max_tokens=10)
    alone = {rid: engine.generate(p, 10) for rid, p in streams.prompts.items()}
    events: list[dict] = []
    batcher = Batcher(engine, "inflight", trace=events.append).start()
    for rid in streams.prompts:
        batcher.submit(streams.sequence(rid))
    streams.wait()
    batcher.stop()
    assert streams.got == alone
    assert not any(e.get("admitted") for e in events if e["event"] == "step")


def test_engine_without_its_kernel_is_refused_clearly(engine_dir, tmp_path):
    copy = tmp_path / "engine"
    shutil.copytree(engine_dir, copy)
    (copy / runtime.KERNEL_LIBRARY).unlink()
    with pytest.raises(TritonLabError, match=r"attention kernel ragged_attention\.so, which is missing") as err:
        load_engine(copy)
    assert "copy the whole engine directory" in err.value.fix


def test_attention_choice_is_checked_and_part_of_the_key(checkpoint_dir, tmp_path):
    with pytest.raises(TritonLabError, match="attention='flash' cannot be built"):
        build_engine(checkpoint_dir, tmp_path / "e", attention="flash", progress=False)
    record = runtime.device_record()
    limits = BuildLimits()
    assert build_key(checkpoint_dir, limits, record) == build_key(checkpoint_dir, limits, record, "ragged")
    assert build_key(checkpoint_dir, limits, record, "padded") != build_key(checkpoint_dir, limits, record)
    assert build_key(checkpoint_dir, limits, {**record, "device_class": "cuda"}) == build_key(
        checkpoint_dir, limits, {**record, "device_class": "cuda"}, "padded"
    )


def test_a_changed_kernel_is_another_engine(checkpoint_dir, tmp_path, monkeypatch):
    """The kernel is compiled into the engine directory, so the cache key covers its source (a cached engine with the
    old kernel must not be reused)."""
    from tritonlab.engine import build

    record, limits = runtime.device_record(), BuildLimits()
    before, padded = build_key(checkpoint_dir, limits, record), build_key(checkpoint_dir, limits, record, "padded")
    edited = tmp_path / "ragged_attention.cpp"
    edited.write_text(attention.KERNEL_SOURCE.read_text() + "\n// edited\n")
    monkeypatch.setattr(build, "KERNEL_SOURCE", edited)
    assert build_key(checkpoint_dir, limits, record) != before
    assert build_key(checkpoint_dir, limits, record, "padded") == padded  # a padded engine does not use the kernel
