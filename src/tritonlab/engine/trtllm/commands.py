"""Check a learner's TensorRT-LLM command line against the flags the 1.2.x tools really accept.

    >>> validate_command("trtllm-build --model_dir x --max_output_len 512").errors[1]
    '--max_output_len was removed: use --max_seq_len (= input + output)'

Parsing follows argparse as those tools configure it: ``--flag value`` and ``--flag=value``, store_true switches
that take no value, choices, int/float values, and argparse's acceptance of unique abbreviations (reported as a
warning: write flags in full). Flags from old notes are rejected with the right flag or place (``flags.WRONG``).
After parsing, the rules the tools enforce themselves (or that make a useless engine) are checked: limits,
parallelism at conversion, one quantization at a time.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from tritonlab.engine.trtllm.flags import FLAGS, WRONG, Flag, Tool

Value = str | list[str] | bool


@dataclass
class CommandReport:
    """What a command line would do: the tool, its parsed flags, and everything wrong with it."""

    command: str
    tool: Tool | None = None
    args: dict[str, Value] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def int_arg(self, name: str) -> int | None:
        value = self.args.get(name)
        try:
            return int(value) if isinstance(value, str) else None
        except ValueError:
            return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "tool": self.tool,
            "args": self.args,
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def split_command(command: str | list[str]) -> list[str]:
    """Tokens of a shell command line (backslash-newline continuations and comments allowed)."""
    if isinstance(command, list):
        return list(command)
    return shlex.split(command.replace("\\\n", " "), comments=True)


def detect_tool(tokens: list[str]) -> tuple[Tool | None, list[str]]:
    """Which tool the tokens run, and the tokens after it."""
    for index, token in enumerate(tokens):
        name = PurePath(token).name
        if name == "trtllm-build":
            return "trtllm-build", tokens[index + 1 :]
        if name in ("convert_checkpoint.py", "quantize.py"):
            return name, tokens[index + 1 :]  # type: ignore[return-value]
    return None, tokens


def validate_command(command: str | list[str]) -> CommandReport:
    """Parse and check one command line of trtllm-build, convert_checkpoint.py or quantize.py."""
    text = command if isinstance(command, str) else shlex.join(command)
    report = CommandReport(text)
    try:
        tokens = split_command(command)
    except ValueError as e:
        report.errors.append(f"the command line does not parse as shell words: {e}")
        return report
    tool, rest = detect_tool(tokens)
    if tool is None:
        report.errors.append(
            "not a TensorRT-LLM engine-workflow command: expected trtllm-build, python3 .../convert_checkpoint.py "
            "or python3 examples/quantization/quantize.py"
        )
        return report
    report.tool = tool
    _parse(tool, rest, report)
    _check_semantics(tool, report)
    return report


def validate_argv(argv: list[str]) -> CommandReport:
    return validate_command(list(argv))


# ---------------------------------------------------------------------------------------------- parsing
def _resolve(tool: Tool, name: str, report: CommandReport) -> Flag | None:
    table, wrong = FLAGS[tool], WRONG[tool]
    if name in wrong:
        report.errors.append(wrong[name])
        return None
    if name in table:
        return table[name]
    matches = sorted({table[k].name for k in table if k.startswith(name)}) if name.startswith("--") else []
    if len(matches) == 1:
        report.warnings.append(
            f"{name} is an abbreviation argparse expands to {matches[0]}: write {matches[0]} in full"
        )
        return table[matches[0]]
    if len(matches) > 1:
        report.errors.append(f"{name} is ambiguous for {tool} (could be {', '.join(matches)})")
        return None
    close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    report.errors.append(f"{tool} has no flag {name}{hint}")
    return None


def _parse(tool: Tool, tokens: list[str], report: CommandReport) -> None:
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or _is_number(token):
            report.errors.append(f"unexpected argument {token!r}: {tool} takes no positional arguments")
            continue
        name, has_inline, inline = token.partition("=")
        flag = _resolve(tool, name, report)
        values: list[str] = [inline] if has_inline else []
        # take the values that follow as argparse would: as many as the flag's arity allows (all for an unknown
        # flag, whose values are skipped), stopping at anything that looks like a flag
        limit = {0: 0, 1: 1, "?": 1}.get(flag.arity, len(tokens)) if flag is not None else len(tokens)
        if flag is not None and flag.arity == 0:
            limit = 1  # a value after a switch is reported below, not as a stray positional
        while not has_inline and len(values) < limit and i < len(tokens) and _is_value(tokens[i]):
            values.append(tokens[i])
            i += 1
        if flag is None:
            continue
        _store(tool, flag, name, values, report)


def _store(tool: Tool, flag: Flag, used: str, values: list[str], report: CommandReport) -> None:
    key = flag.name
    if flag.arity == 0:
        if values:
            report.errors.append(f"{used} is a switch and takes no value (argparse rejects {values[0]!r})")
        report.args[key] = True
        return
    if flag.arity == "?":
        if len(values) > 1:
            report.errors.append(f"{used} takes at most one value, got {values}")
        value = values[0] if values else (flag.choices[0] if flag.choices else "")
        values = [value]
    elif flag.arity == "+":
        if not values:
            report.errors.append(f"{used} needs at least one value")
        report.args[key] = values
        return
    elif len(values) != 1:
        if not values:
            report.errors.append(_missing_value(used, flag))
            return
        report.errors.append(f"{used} takes one value, got {len(values)}: {values}")
    value = values[0]
    if flag.choices is not None:
        candidate = value.lower() if flag.case_insensitive else value
        if candidate not in flag.choices:
            report.errors.append(f"{used} {value!r} is not one of {', '.join(flag.choices)}")
    if flag.kind in ("int", "float") and not _is_number(value, integer=flag.kind == "int"):
        report.errors.append(f"{used} needs {'an integer' if flag.kind == 'int' else 'a number'}, got {value!r}")
    if key in report.args:
        report.warnings.append(f"{key} is given twice: the last value ({value}) wins")
    report.args[key] = value


def _missing_value(used: str, flag: Flag) -> str:
    if used == "--paged_kv_cache":
        return "--paged_kv_cache is deprecated and needs a value (bare, it is rejected): use --kv_cache_type paged"
    if flag.choices == ("enable", "disable"):
        return f"{used} needs a value: {used} enable (or disable)"
    if flag.choices:
        return f"{used} needs a value, one of {', '.join(flag.choices)}"
    return f"{used} needs a value"


def _is_value(token: str) -> bool:
    return not token.startswith("-") or _is_number(token)


def _is_number(text: str, integer: bool = False) -> bool:
    try:
        int(text) if integer else float(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------- rules
def _check_semantics(tool: Tool, report: CommandReport) -> None:
    {"trtllm-build": _check_build, "convert_checkpoint.py": _check_convert, "quantize.py": _check_quantize}[tool](
        report
    )
    for name in (
        "--tp_size",
        "--pp_size",
        "--max_batch_size",
        "--max_input_len",
        "--max_seq_len",
        "--max_num_tokens",
        "--workers",
        "--max_beam_width",
    ):
        value = report.int_arg(name)
        if value is not None and value < 1:
            report.errors.append(f"{name} is {value}: it must be 1 or more")


def _check_build(report: CommandReport) -> None:
    args = report.args
    if "--checkpoint_dir" not in args and "--model_config" not in args:
        report.errors.append("trtllm-build needs --checkpoint_dir CKPT (the output of convert_checkpoint.py)")
    if "--paged_kv_cache" in args:
        report.warnings.append("--paged_kv_cache is deprecated: use --kv_cache_type paged")
        if "--kv_cache_type" in args:
            report.warnings.append("--paged_kv_cache and --kv_cache_type are both given: keep --kv_cache_type")
    seq, inp, tokens = (report.int_arg(n) for n in ("--max_seq_len", "--max_input_len", "--max_num_tokens"))
    if seq is not None and inp is not None:
        if seq < inp:
            report.errors.append(
                f"--max_seq_len {seq} is below --max_input_len {inp}: max_seq_len counts prompt + output "
                f"(e.g. {inp} + 512 = {inp + 512})"
            )
        elif seq == inp:
            report.warnings.append("--max_seq_len equals --max_input_len: a full-length prompt cannot generate")
    if tokens is not None and inp is not None and tokens < inp:
        if args.get("--use_paged_context_fmha") == "disable" or args.get("--context_fmha") == "disable":
            report.errors.append(
                f"--max_num_tokens {tokens} is below --max_input_len {inp} with paged context FMHA off: a "
                "full-length prompt cannot be scheduled (chunked context needs --use_paged_context_fmha enable)"
            )
        else:
            report.warnings.append(
                f"--max_num_tokens {tokens} is below --max_input_len {inp}: long prompts only run as chunked context"
            )
    if args.get("--multiple_profiles") == "enable" and "--opt_num_tokens" in args:
        report.errors.append(
            "--multiple_profiles enable and --opt_num_tokens cannot be combined (trtllm-build refuses)"
        )
    if (args.get("--gather_context_logits") or args.get("--gather_all_token_logits")) and (
        report.int_arg("--max_draft_len") or 0
    ) > 0:
        report.errors.append(
            "gathering context logits is not supported with --max_draft_len > 0 (trtllm-build refuses)"
        )
    if "--max_seq_len" not in args:
        report.warnings.append(
            "no --max_seq_len: trtllm-build derives it from the model (often far larger than needed)"
        )


_CONVERT_QUANT = ("--use_weight_only", "--use_fp8", "--use_nvfp4", "--smoothquant", "--use_fp8_rowwise", "--use_qserve")


def _check_convert(report: CommandReport) -> None:
    args = report.args
    if "--model_dir" not in args and "--meta_ckpt_dir" not in args:
        report.errors.append("convert_checkpoint.py needs --model_dir HF_MODEL (or --meta_ckpt_dir)")
    if "--output_dir" not in args:
        report.warnings.append("no --output_dir: the checkpoint goes to ./tllm_checkpoint")
    chosen = [name for name in _CONVERT_QUANT if name in args]
    if len(chosen) > 1:
        report.errors.append(
            f"{' and '.join(chosen)} are all given: the script applies only the first it checks — choose one"
        )
    if "--weight_only_precision" in args and "--use_weight_only" not in args:
        report.warnings.append("--weight_only_precision has no effect without --use_weight_only")
    if ("--per_channel" in args or "--per_token" in args) and "--smoothquant" not in args:
        report.warnings.append("--per_channel/--per_token only apply with --smoothquant ALPHA")
    alpha = args.get("--smoothquant")
    if isinstance(alpha, str) and _is_number(alpha) and not 0.0 <= float(alpha) <= 1.0:
        report.errors.append(f"--smoothquant {alpha} is outside [0, 1] (0.5 is a good first try)")
    if args.get("--weight_only_precision") == "int4_awq":
        report.warnings.append("AWQ needs calibration: use examples/quantization/quantize.py --qformat int4_awq")
    if "--int8_kv_cache" in args and "--fp8_kv_cache" in args:
        report.errors.append("--int8_kv_cache and --fp8_kv_cache are both given: choose one KV cache format")


def _check_quantize(report: CommandReport) -> None:
    args = report.args
    if "--model_dir" not in args and "--nemo_ckpt_path" not in args:
        report.errors.append("quantize.py needs --model_dir HF_MODEL (or --nemo_ckpt_path)")
    if "--qformat" not in args:
        report.warnings.append("no --qformat: quantize.py defaults to full_prec (no quantization)")
