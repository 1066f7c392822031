"""Check what trtllm-build wrote against the plan that asked for it.

A 1.2.x engine directory holds ``config.json`` — ``{"version", "pretrained_config", "build_config"}``, where
``pretrained_config`` carries ``dtype``, ``mapping`` (``tp_size``, ``pp_size``, ``world_size``) and ``quantization``
(``quant_algo``, ``kv_cache_quant_algo``), and ``build_config`` the limits (``max_batch_size``,
``max_input_len``, ``max_seq_len``, ``max_num_tokens``, ``max_beam_width``), ``kv_cache_type`` ("PAGED", ...) and
``plugin_config`` — plus exactly one ``rank<N>.engine`` per tensor x pipeline rank. Every problem names the file
and the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonlab.engine.trtllm.plan import KV_QUANT_ALGO, QUANT_ALGO, BuildPlan
from tritonlab.errors import TritonLabError

RANK_FILE = re.compile(r"rank(\d+)\.engine")
LIMIT_KEYS = ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "max_beam_width")


class EngineDirError(TritonLabError):
    """The engine directory is missing, incomplete, or was built for another plan."""

    def __init__(self, problems: list[tuple[str, str]], directory: Path):
        self.problems = problems
        lines = [f"the engine in {directory} does not match the plan ({len(problems)} problem(s)):"]
        lines += [f"  - {problem}" for problem, _ in problems]
        fixes = list(dict.fromkeys(fix for _, fix in problems))
        super().__init__("\n".join(lines), fix="; ".join(fixes))


@dataclass(frozen=True)
class EngineInfo:
    """The facts of a checked engine directory."""

    directory: Path
    version: str
    dtype: str
    tp_size: int
    pp_size: int
    quant_algo: str | None
    kv_cache_quant_algo: str | None
    kv_cache_type: str
    limits: dict[str, int]
    rank_files: tuple[str, ...]

    @property
    def world_size(self) -> int:
        return self.tp_size * self.pp_size


REBUILD = "rebuild with the plan's commands (tritonlab.engine.trtllm.run_plan(plan))"


def read_engine_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not directory.is_dir():
        raise EngineDirError([(f"{directory} is not a directory", "build the engine first: " + REBUILD)], directory)
    if not path.is_file():
        raise EngineDirError(
            [(f"{path} is missing (trtllm-build writes it last: did the build fail?)", REBUILD)], directory
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EngineDirError([(f"{path} is not valid JSON: {e}", REBUILD)], directory) from None
    if not isinstance(config, dict):
        raise EngineDirError([(f"{path} is not a JSON object", REBUILD)], directory)
    return config


def _section(config: dict[str, Any], key: str, path: Path, problems: list[tuple[str, str]]) -> dict[str, Any]:
    value = config.get(key)
    if not isinstance(value, dict):
        problems.append(
            (
                f"{path} has no {key!r} object (not a TensorRT-LLM 1.x engine config)",
                "build with trtllm-build from TensorRT-LLM 1.2.x",
            )
        )
        return {}
    return value


def engine_info(directory: str | Path) -> EngineInfo:
    """Read an engine directory without a plan: its config and rank files must at least agree with each other."""
    directory = Path(directory)
    config = read_engine_config(directory)
    path = directory / "config.json"
    problems: list[tuple[str, str]] = []
    if "version" not in config:
        problems.append((f"{path} has no 'version'", "build with trtllm-build from TensorRT-LLM 1.2.x"))
    pretrained = _section(config, "pretrained_config", path, problems)
    build = _section(config, "build_config", path, problems)
    mapping = pretrained.get("mapping") if isinstance(pretrained.get("mapping"), dict) else {}
    quant = pretrained.get("quantization") if isinstance(pretrained.get("quantization"), dict) else {}
    tp, pp = int(mapping.get("tp_size", 1) or 1), int(mapping.get("pp_size", 1) or 1)
    limits = {key: build[key] for key in LIMIT_KEYS if isinstance(build.get(key), int)}
    for key in ("max_batch_size", "max_input_len", "max_seq_len"):
        if build and key not in limits:
            problems.append((f"{path}: build_config has no integer {key!r}", REBUILD))
    rank_files = _rank_files(directory, tp * pp, problems)
    if problems:
        raise EngineDirError(problems, directory)
    return EngineInfo(
        directory=directory,
        version=str(config.get("version")),
        dtype=str(pretrained.get("dtype")),
        tp_size=tp,
        pp_size=pp,
        quant_algo=quant.get("quant_algo"),
        kv_cache_quant_algo=quant.get("kv_cache_quant_algo"),
        kv_cache_type=str(build.get("kv_cache_type", "")),
        limits=limits,
        rank_files=rank_files,
    )


def _rank_files(directory: Path, world_size: int, problems: list[tuple[str, str]]) -> tuple[str, ...]:
    present = sorted(
        (p.name for p in directory.iterdir() if RANK_FILE.fullmatch(p.name)),
        key=lambda n: int(RANK_FILE.fullmatch(n)[1]),
    )  # type: ignore[index]
    expected = [f"rank{rank}.engine" for rank in range(world_size)]
    missing = [name for name in expected if name not in present]
    extra = [name for name in present if name not in expected]
    if missing:
        problems.append(
            (
                f"{', '.join(str(directory / n) for n in missing)} missing: tp x pp = {world_size} rank(s) need "
                f"{', '.join(expected)}",
                "the build stopped early or ran out of GPU memory: see its log, then " + REBUILD,
            )
        )
    if extra:
        problems.append(
            (
                f"{', '.join(extra)} in {directory} do not belong to a {world_size}-rank engine "
                "(left from an older build?)",
                f"delete {directory} and {REBUILD}",
            )
        )
    for name in present:
        if name in expected and (directory / name).is_dir():
            problems.append((f"{directory / name} is a directory, not an engine file", REBUILD))
    return tuple(name for name in present if name in expected)


def check_engine_dir(plan: BuildPlan, directory: str | Path | None = None) -> EngineInfo:
    """Validate the engine directory against ``plan``: dtype, tp/pp, quantization, limits, KV cache, rank files."""
    directory = Path(directory or plan.engine_dir)
    info = engine_info(directory)
    path = directory / "config.json"
    problems: list[tuple[str, str]] = []
    mismatch = f"the engine in {directory} was built from another plan: " + REBUILD

    def expect(what: str, found: object, wanted: object) -> None:
        if found != wanted:
            problems.append((f"{path}: {what} is {found!r}, the plan says {wanted!r}", mismatch))

    expect("pretrained_config.dtype", info.dtype, plan.dtype)
    expect("pretrained_config.mapping.tp_size", info.tp_size, plan.tp_size)
    expect("pretrained_config.mapping.pp_size", info.pp_size, plan.pp_size)
    wanted_algo = QUANT_ALGO[plan.quant.mode]
    if plan.quant.mode == "smoothquant":
        if not str(info.quant_algo or "").startswith("W8A8_SQ"):
            expect("pretrained_config.quantization.quant_algo", info.quant_algo, "W8A8_SQ_*")
    else:
        expect("pretrained_config.quantization.quant_algo", info.quant_algo, wanted_algo)
    expect(
        "pretrained_config.quantization.kv_cache_quant_algo",
        info.kv_cache_quant_algo,
        KV_QUANT_ALGO[plan.quant.kv_cache],
    )
    for key in LIMIT_KEYS:
        if key in info.limits:
            expect(f"build_config.{key}", info.limits[key], _built_limit(plan, key))
    if info.kv_cache_type:
        expect("build_config.kv_cache_type", info.kv_cache_type.lower(), plan.kv_cache_type)
    if problems:
        raise EngineDirError(problems, directory)
    return info


def _built_limit(plan: BuildPlan, key: str) -> int:
    """The value trtllm-build records for a plan limit: it caps max_num_tokens at max_batch_size x max_seq_len."""
    lim = plan.limits
    if key == "max_num_tokens":
        return min(lim.max_num_tokens, lim.max_batch_size * lim.max_seq_len)
    return int(getattr(lim, key))
