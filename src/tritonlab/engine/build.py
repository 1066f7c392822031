"""Phase 2, build: compile a converted checkpoint ahead of time for THIS machine (AOTInductor), like ``trtllm-build``.

    engine = build_engine("work/ckpt", "work/engine", max_batch_size=16, max_input_len=64, max_seq_len=320)

``torch.export`` captures the engine's step function (:class:`~tritonlab.engine.network.EngineDecoder`) with
dynamic batch and token dimensions bounded by the build limits; ``torch._inductor.aoti_compile_and_package``
generates and compiles C++ kernels for this CPU's vector ISA (or this GPU) into ``rank0.pt2``. The engine's
``config.json`` records the limits and the device it was built for; loading it elsewhere is refused
(:func:`tritonlab.engine.runtime.check_device`), as a TensorRT engine built on an A100 refuses to run on an A10.

Builds are cached by a content hash of the checkpoint files, the limits, the device and the torch version: the
second build of the same thing copies the cached engine instead of compiling again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tritonlab.engine import runtime
from tritonlab.engine.attention import ATTENTION, KERNEL_SOURCE, build_kernel, c_shims, kernel_flags
from tritonlab.engine.convert import load_checkpoint
from tritonlab.errors import TritonLabError
from tritonlab.paths import cache_dir

ENGINE_FILE = runtime.ENGINE_FILE  # one name for the writer and the loader
ENGINE_VERSION = runtime.ENGINE_VERSION


@dataclass(frozen=True)
class BuildLimits:
    """What ``trtllm-build`` calls ``--max_batch_size``, ``--max_input_len`` and ``--max_seq_len`` (input + output)."""

    max_batch_size: int = 16
    max_input_len: int = 64
    max_seq_len: int = 320

    @property
    def max_num_tokens(self) -> int:
        """Tokens one packed step may hold (``trtllm-build --max_num_tokens``): every slot starting a longest prompt."""
        return self.max_batch_size * self.max_input_len

    def check(self, max_position_embeddings: int) -> None:
        if min(self.max_batch_size, self.max_input_len, self.max_seq_len) < 1:
            raise TritonLabError(f"build limits must be positive: {self}", fix="use values of 1 or more")
        if self.max_input_len > self.max_seq_len:
            raise TritonLabError(
                f"max_input_len={self.max_input_len} is larger than max_seq_len={self.max_seq_len}",
                fix="max_seq_len counts prompt + output tokens: make it at least max_input_len",
            )
        if self.max_seq_len > max_position_embeddings:
            raise TritonLabError(
                f"max_seq_len={self.max_seq_len} exceeds the model's max_position_embeddings={max_position_embeddings}",
                fix=f"build with max_seq_len <= {max_position_embeddings}",
            )


@dataclass
class BuildResult:
    engine_dir: Path
    cache_hit: bool
    seconds: float
    key: str


def engines_cache() -> Path:
    path = cache_dir() / "engines"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_attention(device: dict[str, Any]) -> str:
    """Ragged attention (attention.py) on a CPU; a GPU build keeps the padded attention Inductor compiles."""
    return "padded" if device.get("device_class") == "cuda" else "ragged"


def build_key(checkpoint_dir: Path, limits: BuildLimits, device: dict[str, Any], attention: str | None = None) -> str:
    """Content hash of everything the compiled engine depends on (not file names or times)."""
    digest = hashlib.sha256()
    for path in sorted(checkpoint_dir.iterdir()):
        # The tokenizer is copied into the engine: a tokenizer-only change must not hit a stale cached engine.
        if path.is_file() and (path.suffix == ".safetensors" or path.name in ("config.json", "tokenizer.json")):
            digest.update(path.name.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    attention = attention or default_attention(device)
    extra = {"limits": asdict(limits), "device": device, "version": ENGINE_VERSION, "attention": attention}
    digest.update(json.dumps(extra, sort_keys=True).encode())
    if attention == "ragged":  # the kernel is compiled into the engine directory: a changed kernel is another engine
        digest.update(KERNEL_SOURCE.read_bytes() + " ".join(kernel_flags()).encode())
    # The device is hashed above; the readable prefix only names the cache folder (cpu-..., cuda-sm90-...).
    prefix = device.get("device_class", "cpu")
    if prefix == "cuda":
        prefix += "-sm" + str(device.get("compute_capability", "")).replace(".", "")
    return f"{prefix}-{digest.hexdigest()[:20]}"


@contextlib.contextmanager
def _stages(total: int, show: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="build engine", unit="stage", disable=not show, leave=True) as bar:

        def advance(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        bar.set_postfix_str("load checkpoint")
        yield advance


def _compile(
    checkpoint_dir: Path, limits: BuildLimits, dest: Path, advance: Any, device: str, attention: str
) -> dict[str, Any]:
    import torch
    from torch.export import Dim

    from tritonlab.engine.network import EngineDecoder

    config, tensors = load_checkpoint(checkpoint_dir)
    limits.check(int(config["max_position_embeddings"]))
    # Weights, caches and example inputs on the target device: export records it, and Inductor then generates
    # C++ for this CPU or Triton kernels compiled to this GPU's machine code (sm_90 on an H100/H200).
    module = EngineDecoder(config, tensors, attention).eval().to(device)
    k_cache, v_cache = module.empty_cache(limits.max_batch_size, limits.max_seq_len, device)
    advance("torch.export")
    # Dynamic within the build limits. DYNAMIC hints rather than named Dims: torch 2.11 exporting for CUDA emits
    # guards that hold for every allowed size (min(64*T, 192*T) == 64*T, seen on the H200), which a named Dim rejects
    # as a constraint violation; a DYNAMIC dimension still fails the export if it would be specialized to a constant.
    # Rows: sequences, or for a ragged (CPU) engine's packed steps tokens, up to max_num_tokens (runtime.py).
    batch = Dim.DYNAMIC(min=1, max=limits.max_num_tokens if attention == "ragged" else limits.max_batch_size)
    tokens = Dim.DYNAMIC(min=1, max=limits.max_input_len)
    window = Dim.DYNAMIC(min=1, max=limits.max_seq_len)  # the cached positions a step reads (network.py)
    # Example sizes above 1 (and all different) so export specializes none of them to a constant or to another.
    example = (
        torch.ones(2, 3, dtype=torch.int64, device=device),
        torch.zeros(2, dtype=torch.int64, device=device),
        torch.arange(2, dtype=torch.int64, device=device),
        k_cache,
        v_cache,
        torch.arange(5, dtype=torch.int64, device=device),
    )
    with torch.no_grad():
        program = torch.export.export(
            module, example, dynamic_shapes=({0: batch, 1: tokens}, {0: batch}, {0: batch}, None, None, {0: window})
        )
    advance(f"AOTInductor compile ({'kernels for this GPU' if device.startswith('cuda') else 'C++ for this CPU'})")
    shims = {}
    if attention == "ragged":
        build_kernel(dest)
        shims = c_shims()
    with torch.no_grad(), torch._inductor.config.patch({"aot_inductor.custom_ops_to_c_shims": shims}):
        torch._inductor.aoti_compile_and_package(program, package_path=str(dest / ENGINE_FILE))
    return config


def build_engine(
    checkpoint_dir: str | Path,
    output_dir: str | Path | None = None,
    *,
    max_batch_size: int = BuildLimits.max_batch_size,
    max_input_len: int = BuildLimits.max_input_len,
    max_seq_len: int = BuildLimits.max_seq_len,
    device: str = "cpu",
    attention: str | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> BuildResult:
    """Compile ``checkpoint_dir`` into an engine directory (``config.json`` + ``rank0.pt2`` + tokenizer).

    ``device``: ``"cpu"`` (C++ for this CPU's vector ISA) or ``"cuda"`` / ``"cuda:N"`` (kernels for that GPU's
    compute capability); the engine then loads on that kind of device only. Without ``output_dir`` the engine stays
    in tritonlab's cache (``BuildResult.engine_dir`` says where). ``attention``: ``"ragged"`` (the CPU default: each
    sequence reads only its own cached positions, attention.py) or ``"padded"`` (the GPU default: every sequence
    reads the batch's longest window, masked).
    """
    start = time.perf_counter()
    checkpoint_dir = Path(checkpoint_dir)
    limits = BuildLimits(max_batch_size, max_input_len, max_seq_len)
    load_checkpoint(checkpoint_dir)  # a clear error for a wrong directory before anything is hashed
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise TritonLabError(f"device={device!r} cannot be built for", fix="use device='cpu', 'cuda' or 'cuda:N'")
    try:
        record = runtime.device_record(device)
    except runtime.EngineMismatchError as exc:  # cuda asked for on a machine without one
        raise TritonLabError(str(exc), fix=exc.fix) from None
    # The device record (class, CPU ISA or GPU model + compute capability, CUDA and torch versions) is part of the
    # key: a CPU and a GPU build of the same checkpoint and limits never share a cache entry.
    attention = attention or default_attention(record)
    if attention not in ATTENTION or (attention == "ragged" and record["device_class"] == "cuda"):
        raise TritonLabError(
            f"attention={attention!r} cannot be built for {device!r}",
            fix="use attention='ragged' (CPU only: the kernel is CPU code) or 'padded', or leave it out",
        )
    key = build_key(checkpoint_dir, limits, record, attention)
    cached = engines_cache() / key
    hit = use_cache and (cached / "config.json").exists() and (cached / ENGINE_FILE).exists()
    if not hit:
        with tempfile.TemporaryDirectory(dir=engines_cache(), prefix=f".{key}-") as tmp, _stages(3, progress) as step:
            work = Path(tmp)
            config = _compile(checkpoint_dir, limits, work, step, device, attention)
            step("write config.json")
            for name in ("tokenizer.json",):
                if (checkpoint_dir / name).exists():
                    shutil.copyfile(checkpoint_dir / name, work / name)
            engine_config = {
                "version": ENGINE_VERSION,
                "pretrained_config": config,
                "build_config": {**asdict(limits), "max_num_tokens": limits.max_num_tokens},
                "attention": attention,  # ragged: the kernel library beside the package (runtime.CpuStep loads it)
                "device": record,
                "build_key": key,
                "build_seconds": round(time.perf_counter() - start, 2),
            }
            (work / "config.json").write_text(json.dumps(engine_config, indent=2) + "\n")
            shutil.rmtree(cached, ignore_errors=True)
            os.replace(work, cached)  # atomic: a crashed build never leaves a half engine under the key
            work.mkdir()  # TemporaryDirectory cleans up its own path
    engine_dir = cached
    if output_dir is not None:
        engine_dir = Path(output_dir)
        if engine_dir.resolve() != cached.resolve():
            shutil.rmtree(engine_dir, ignore_errors=True)
            shutil.copytree(cached, engine_dir)
    return BuildResult(engine_dir, hit, time.perf_counter() - start, key)


def engine_config(engine_dir: str | Path) -> dict[str, Any]:
    path = Path(engine_dir) / "config.json"
    if not path.exists() or not (Path(engine_dir) / ENGINE_FILE).exists():
        raise TritonLabError(
            f"{engine_dir} is not an engine directory (config.json + {ENGINE_FILE})",
            fix="build one with tritonlab.engine.build.build_engine(checkpoint_dir, engine_dir)",
        )
    return json.loads(path.read_text())


def load_engine(engine_dir: str | Path, *, num_threads: int | None = None, device: str | None = None) -> runtime.Engine:
    """The engine in this process (on ``device``; default: the device class it was built for), refused with a
    TritonLabError if it was built for another device class, CPU ISA, GPU, CUDA or torch version."""
    engine_config(engine_dir)
    try:
        return runtime.Engine.load(str(engine_dir), num_threads=num_threads, device=device)
    except runtime.EngineMismatchError as exc:
        raise TritonLabError(str(exc), fix=exc.fix) from None
