"""A typed build plan for the TensorRT-LLM 1.2.x engine workflow, and the exact command lines it stands for.

Phase 1 (convert): ``convert_checkpoint.py`` (dtype, tp/pp, weight-only, SmoothQuant, FP8) or
``examples/quantization/quantize.py`` (ModelOpt calibration: FP8, INT4-AWQ, W4A8-AWQ, NVFP4, also SmoothQuant and
weight-only). Parallelism is decided here: the checkpoint holds one shard per rank. Phase 2 (build):
``trtllm-build`` with the limits and plugins; it writes ``config.json`` and one ``rank<N>.engine`` per rank.
Every argv this module writes is checked by :func:`tritonlab.engine.trtllm.commands.validate_argv` against the
recorded 1.2.x flag tables (``flags.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from tritonlab.errors import TritonLabError

Dtype = Literal["float16", "bfloat16", "float32"]
QuantMode = Literal["none", "int8_wo", "int4_wo", "smoothquant", "fp8", "int4_awq", "w4a8_awq", "nvfp4"]
KVCacheType = Literal["paged", "continuous", "disabled"]
KVCacheQuant = Literal["none", "int8", "fp8"]
ConvertTool = Literal["auto", "convert_checkpoint", "quantize"]

# Families whose convert_checkpoint.py flags are recorded in flags.py (Llama's script also converts Mistral and
# Mixtral checkpoints). Any HuggingFace model ModelOpt supports can go through quantize.py instead.
CONVERT_FAMILIES = ("llama",)
QUANTIZE_ONLY: tuple[QuantMode, ...] = ("int4_awq", "w4a8_awq", "nvfp4")
# Where the TRT-LLM container keeps the examples (COPY .../examples examples, WORKDIR /app in the r26.07
# Dockerfile.triton.trt_llm_backend of triton-inference-server/tensorrtllm_backend).
CONTAINER_EXAMPLES = PurePosixPath("/app/examples")

# quant_algo / kv_cache_quant_algo that the converted checkpoint (and so the engine's config.json) records.
QUANT_ALGO: dict[QuantMode, str | None] = {
    "none": None,
    "int8_wo": "W8A16",
    "int4_wo": "W4A16",
    "fp8": "FP8",
    "int4_awq": "W4A16_AWQ",
    "w4a8_awq": "W4A8_AWQ",
    "nvfp4": "NVFP4",
    "smoothquant": "W8A8_SQ",  # prefix: the suffix depends on per-channel / per-token
}
KV_QUANT_ALGO: dict[KVCacheQuant, str | None] = {"none": None, "int8": "INT8", "fp8": "FP8"}
QFORMAT: dict[QuantMode, str] = {
    "none": "full_prec",
    "int8_wo": "int8_wo",
    "int4_wo": "int4_wo",
    "smoothquant": "int8_sq",
    "fp8": "fp8",
    "int4_awq": "int4_awq",
    "w4a8_awq": "w4a8_awq",
    "nvfp4": "nvfp4",
}


class PlanError(TritonLabError):
    """The build plan is inconsistent: TensorRT-LLM would refuse it or build something unusable."""


@dataclass(frozen=True)
class Quantization:
    """How weights (and optionally the KV cache) are quantized. Applied at conversion, never at build."""

    mode: QuantMode = "none"
    kv_cache: KVCacheQuant = "none"
    smoothquant_alpha: float = 0.5
    per_channel: bool = True
    per_token: bool = True
    calib_size: int | None = None  # quantize.py / SmoothQuant calibration samples (tool default 512)
    via: ConvertTool = "auto"

    @property
    def tool(self) -> Literal["convert_checkpoint", "quantize"]:
        if self.via != "auto":
            return self.via
        return "quantize" if self.mode in ("fp8", *QUANTIZE_ONLY) else "convert_checkpoint"


@dataclass(frozen=True)
class BuildLimits:
    """trtllm-build's engine limits. max_seq_len = longest prompt + longest output (there is no max_output_len)."""

    max_batch_size: int = 64
    max_input_len: int = 2048
    max_seq_len: int = 2560
    max_num_tokens: int = 8192
    max_beam_width: int = 1


@dataclass(frozen=True)
class Plugins:
    """The trtllm-build plugin/feature flags a course engine sets; None leaves the tool's default."""

    gemm_plugin: str | None = "auto"
    gpt_attention_plugin: str | None = "auto"
    context_fmha: bool | None = None
    use_paged_context_fmha: bool | None = None
    use_fp8_context_fmha: bool | None = None  # only meaningful with FP8
    remove_input_padding: bool | None = None
    multiple_profiles: bool | None = None
    tokens_per_block: int | None = None


@dataclass(frozen=True)
class BuildPlan:
    """Everything that decides an engine: the model, its conversion, and its build."""

    model_dir: Path
    checkpoint_dir: Path
    engine_dir: Path
    family: str = "llama"
    dtype: Dtype = "float16"
    tp_size: int = 1
    pp_size: int = 1
    quant: Quantization = field(default_factory=Quantization)
    limits: BuildLimits = field(default_factory=BuildLimits)
    plugins: Plugins = field(default_factory=Plugins)
    kv_cache_type: KVCacheType = "paged"
    workers: int = 1
    examples_dir: PurePosixPath | Path = CONTAINER_EXAMPLES

    @property
    def world_size(self) -> int:
        return self.tp_size * self.pp_size

    # ------------------------------------------------------------------ checks
    def problems(self) -> list[tuple[str, str]]:
        """(problem, fix) pairs; empty if the plan is consistent."""
        out: list[tuple[str, str]] = []
        lim = self.limits
        for name in ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "max_beam_width"):
            if getattr(lim, name) < 1:
                out.append((f"{name} is {getattr(lim, name)}", f"set {name} to 1 or more"))
        if lim.max_seq_len < lim.max_input_len:
            out.append(
                (
                    f"max_seq_len ({lim.max_seq_len}) is below max_input_len ({lim.max_input_len}): "
                    "no room to generate",
                    f"max_seq_len counts prompt + output: e.g. {lim.max_input_len} + 512 = {lim.max_input_len + 512}",
                )
            )
        elif lim.max_seq_len == lim.max_input_len:
            out.append(
                (
                    "max_seq_len equals max_input_len: a full-length prompt leaves no room for a single output token",
                    "set max_seq_len = max_input_len + the longest output you allow",
                )
            )
        if lim.max_num_tokens < lim.max_input_len and self.plugins.use_paged_context_fmha is False:
            out.append(
                (
                    f"max_num_tokens ({lim.max_num_tokens}) is below max_input_len ({lim.max_input_len}) and paged "
                    "context FMHA (needed for chunked context) is disabled: a full-length prompt cannot be scheduled",
                    "raise max_num_tokens to at least max_input_len, or leave use_paged_context_fmha enabled",
                )
            )
        if self.tp_size < 1 or self.pp_size < 1:
            out.append((f"tp_size={self.tp_size}, pp_size={self.pp_size}", "use 1 or more for each"))
        if self.workers < 1:
            out.append((f"workers={self.workers}", "use 1 or more build workers"))
        out += self._quant_problems()
        return out

    def _quant_problems(self) -> list[tuple[str, str]]:
        q, out = self.quant, []
        if q.tool == "convert_checkpoint" and q.mode in QUANTIZE_ONLY:
            out.append(
                (
                    f"{q.mode} needs ModelOpt calibration, which convert_checkpoint.py does not run",
                    "use via='quantize' (examples/quantization/quantize.py --qformat " + QFORMAT[q.mode] + ")",
                )
            )
        if q.tool == "convert_checkpoint" and self.family not in CONVERT_FAMILIES:
            out.append(
                (
                    f"no recorded convert_checkpoint.py flags for model family {self.family!r} "
                    f"(recorded: {', '.join(CONVERT_FAMILIES)})",
                    "convert it with quantize.py (via='quantize'; mode='none' gives --qformat full_prec), "
                    f"or check that family's examples/models/core/{self.family}/convert_checkpoint.py "
                    "and record its flags",
                )
            )
        if q.mode == "smoothquant" and not 0.0 <= q.smoothquant_alpha <= 1.0:
            out.append((f"smoothquant_alpha {q.smoothquant_alpha} is outside [0, 1]", "0.5 is a good first try"))
        if self.plugins.use_fp8_context_fmha and q.mode != "fp8" and q.kv_cache != "fp8":
            out.append(
                (
                    "use_fp8_context_fmha needs an FP8 model or FP8 KV cache",
                    "drop use_fp8_context_fmha, or quantize with mode='fp8' / kv_cache='fp8'",
                )
            )
        if self.dtype == "float32" and q.mode in ("fp8", "nvfp4"):
            out.append((f"{q.mode} with dtype float32", "use dtype float16 or bfloat16 for the unquantized parts"))
        return out

    def check(self) -> BuildPlan:
        """Raise PlanError naming every problem; return self when there is none."""
        problems = self.problems()
        if problems:
            raise PlanError(
                "the TensorRT-LLM build plan is inconsistent:\n" + "\n".join(f"  - {p}" for p, _ in problems),
                fix="; ".join(f for _, f in problems),
            )
        return self

    # ------------------------------------------------------------------ command lines
    def convert_argv(self) -> list[str]:
        """Phase 1: the conversion (or ModelOpt quantization) command, with tp/pp."""
        if self.quant.tool == "quantize":
            return self._quantize_argv()
        q = self.quant
        script = Path(self.examples_dir) / "models" / "core" / self.family / "convert_checkpoint.py"
        argv = ["python3", str(script), "--model_dir", str(self.model_dir), "--output_dir", str(self.checkpoint_dir)]
        argv += ["--dtype", self.dtype, "--tp_size", str(self.tp_size), "--pp_size", str(self.pp_size)]
        if q.mode in ("int8_wo", "int4_wo"):
            argv += ["--use_weight_only", "--weight_only_precision", q.mode.removesuffix("_wo")]
        elif q.mode == "smoothquant":
            argv += ["--smoothquant", str(q.smoothquant_alpha)]
            argv += ["--per_channel"] * q.per_channel + ["--per_token"] * q.per_token
        elif q.mode == "fp8":
            argv += ["--use_fp8"]
        if q.kv_cache != "none":
            argv += [f"--{q.kv_cache}_kv_cache"]
        if q.calib_size is not None and q.mode == "smoothquant":
            argv += ["--calib_size", str(q.calib_size)]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        return argv

    def _quantize_argv(self) -> list[str]:
        q = self.quant
        script = Path(self.examples_dir) / "quantization" / "quantize.py"
        argv = ["python3", str(script), "--model_dir", str(self.model_dir), "--output_dir", str(self.checkpoint_dir)]
        argv += ["--dtype", self.dtype, "--qformat", QFORMAT[q.mode]]
        if q.kv_cache != "none":
            argv += ["--kv_cache_dtype", q.kv_cache]
        if q.calib_size is not None:
            argv += ["--calib_size", str(q.calib_size)]
        return [*argv, "--tp_size", str(self.tp_size), "--pp_size", str(self.pp_size)]

    def build_argv(self) -> list[str]:
        """Phase 2: trtllm-build. No tp/pp here: the checkpoint already carries them."""
        lim, p = self.limits, self.plugins
        argv = ["trtllm-build", "--checkpoint_dir", str(self.checkpoint_dir), "--output_dir", str(self.engine_dir)]
        argv += ["--max_batch_size", str(lim.max_batch_size), "--max_input_len", str(lim.max_input_len)]
        argv += ["--max_seq_len", str(lim.max_seq_len), "--max_num_tokens", str(lim.max_num_tokens)]
        if lim.max_beam_width != 1:
            argv += ["--max_beam_width", str(lim.max_beam_width)]
        argv += ["--kv_cache_type", self.kv_cache_type]
        for name in ("gemm_plugin", "gpt_attention_plugin"):
            value = getattr(p, name)
            if value is not None:
                argv += [f"--{name}", value]
        for name in (
            "context_fmha",
            "use_paged_context_fmha",
            "use_fp8_context_fmha",
            "remove_input_padding",
            "multiple_profiles",
        ):
            value = getattr(p, name)
            if value is not None:
                argv += [f"--{name}", "enable" if value else "disable"]
        if p.tokens_per_block is not None:
            argv += ["--tokens_per_block", str(p.tokens_per_block)]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        return argv

    def commands(self) -> list[list[str]]:
        """Both phases in order, after checking the plan."""
        self.check()
        return [self.convert_argv(), self.build_argv()]

    def expected_rank_files(self) -> list[str]:
        return [f"rank{rank}.engine" for rank in range(self.world_size)]
