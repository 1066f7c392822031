"""Build plans and command lines for TensorRT-LLM 1.2.x, checked against the flag tables recorded from upstream.

TensorRT-LLM is not installed here: these tests check the command lines we write and the checker learners use,
never a run of the tools.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonlab.engine.trtllm import BuildLimits, BuildPlan, PlanError, Plugins, Quantization, validate_command
from tritonlab.engine.trtllm.commands import validate_argv
from tritonlab.engine.trtllm.flags import FLAGS, SOURCES, TOOLS, WRONG

M, C, E = Path("/models/llama"), Path("/work/ckpt"), Path("/work/engine")


def plan(**kw) -> BuildPlan:
    return BuildPlan(model_dir=M, checkpoint_dir=C, engine_dir=E, **kw)


# ------------------------------------------------------------------------------------------- the plan
def test_default_plan_writes_the_two_phases_exactly():
    convert, build = plan().commands()
    assert convert == ["python3", "/app/examples/models/core/llama/convert_checkpoint.py", "--model_dir", str(M),
                       "--output_dir", str(C), "--dtype", "float16", "--tp_size", "1", "--pp_size", "1"]  # fmt: skip
    assert build == ["trtllm-build", "--checkpoint_dir", str(C), "--output_dir", str(E), "--max_batch_size", "64",
                     "--max_input_len", "2048", "--max_seq_len", "2560", "--max_num_tokens", "8192",
                     "--kv_cache_type", "paged", "--gemm_plugin", "auto", "--gpt_attention_plugin", "auto"]  # fmt: skip


def test_parallelism_is_given_at_conversion_and_never_at_build():
    p = plan(tp_size=2, pp_size=2)
    convert, build = p.commands()
    assert convert[convert.index("--tp_size") + 1] == "2" and convert[convert.index("--pp_size") + 1] == "2"
    assert not {"--tp_size", "--pp_size", "--world_size"} & set(build)
    assert p.world_size == 4 and p.expected_rank_files() == [f"rank{i}.engine" for i in range(4)]


@pytest.mark.parametrize(
    ("quant", "tool", "expected"),
    [
        (Quantization("int8_wo"), "convert_checkpoint.py", ["--use_weight_only", "--weight_only_precision", "int8"]),
        (Quantization("int4_wo"), "convert_checkpoint.py", ["--use_weight_only", "--weight_only_precision", "int4"]),
        (Quantization("smoothquant", smoothquant_alpha=0.5), "convert_checkpoint.py",
         ["--smoothquant", "0.5", "--per_channel", "--per_token"]),
        (Quantization("fp8", via="convert_checkpoint"), "convert_checkpoint.py", ["--use_fp8"]),
        (Quantization("none", kv_cache="fp8"), "convert_checkpoint.py", ["--fp8_kv_cache"]),
        (Quantization("int8_wo", kv_cache="int8"), "convert_checkpoint.py", ["--int8_kv_cache"]),
        (Quantization("fp8", kv_cache="fp8"), "quantize.py", ["--qformat", "fp8", "--kv_cache_dtype", "fp8"]),
        (Quantization("int4_awq"), "quantize.py", ["--qformat", "int4_awq"]),
        (Quantization("w4a8_awq"), "quantize.py", ["--qformat", "w4a8_awq"]),
        (Quantization("nvfp4"), "quantize.py", ["--qformat", "nvfp4"]),
        (Quantization("smoothquant", via="quantize"), "quantize.py", ["--qformat", "int8_sq"]),
        (Quantization("int4_wo", via="quantize", calib_size=64), "quantize.py", ["--qformat", "int4_wo",
                                                                                   "--calib_size", "64"]),
    ],
)  # fmt: skip
def test_each_quantization_goes_to_the_conversion_tool_with_its_real_flags(quant, tool, expected):
    p = plan(quant=quant, tp_size=2)
    convert, build = p.commands()
    report = validate_argv(convert)
    assert report.ok, report.errors
    assert report.tool == tool
    joined = " ".join(convert)
    assert " ".join(expected) in joined
    assert report.args["--tp_size"] == "2"
    assert not any(flag in build for flag in ("--use_fp8", "--qformat", "--use_weight_only", "--smoothquant"))


def test_every_command_a_plan_writes_passes_the_flag_tables():
    plans = [
        plan(dtype="bfloat16", limits=BuildLimits(8, 512, 1024, 2048, 2), workers=2,
             plugins=Plugins(context_fmha=True, use_paged_context_fmha=True, remove_input_padding=True,
                             multiple_profiles=True, tokens_per_block=64)),
        plan(quant=Quantization("fp8"), plugins=Plugins(use_fp8_context_fmha=True), kv_cache_type="continuous"),
        plan(quant=Quantization("none", via="quantize"), family="qwen"),
    ]  # fmt: skip
    for p in plans:
        for argv in p.commands():
            report = validate_argv(argv)
            assert report.ok and not report.warnings, (argv, report.errors, report.warnings)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"limits": BuildLimits(max_input_len=4096, max_seq_len=2048)}, "max_seq_len (2048) is below max_input_len"),
        ({"limits": BuildLimits(max_input_len=2048, max_seq_len=2048)}, "no room for a single output token"),
        ({"limits": BuildLimits(max_batch_size=0)}, "max_batch_size is 0"),
        ({"limits": BuildLimits(max_num_tokens=1024), "plugins": Plugins(use_paged_context_fmha=False)},
         "cannot be scheduled"),
        ({"quant": Quantization("int4_awq", via="convert_checkpoint")}, "needs ModelOpt calibration"),
        ({"family": "qwen"}, "no recorded convert_checkpoint.py flags"),
        ({"quant": Quantization("smoothquant", smoothquant_alpha=1.5)}, "outside [0, 1]"),
        ({"plugins": Plugins(use_fp8_context_fmha=True)}, "use_fp8_context_fmha needs an FP8"),
        ({"tp_size": 0}, "tp_size=0"),
        ({"dtype": "float32", "quant": Quantization("fp8")}, "fp8 with dtype float32"),
    ],
)  # fmt: skip
def test_inconsistent_plans_are_refused_with_the_reason_and_a_fix(kwargs, needle):
    with pytest.raises(PlanError) as info:
        plan(**kwargs).commands()
    assert needle in info.value.message
    assert info.value.fix


# ----------------------------------------------------------------------------- the learner's command lines
def test_the_briefs_example_names_the_right_flag():
    report = validate_command("trtllm-build --model_dir x --max_output_len 512")
    assert not report.ok
    assert "--max_output_len was removed: use --max_seq_len (= input + output)" in report.errors
    assert any("--checkpoint_dir" in e for e in report.errors)


@pytest.mark.parametrize(("flag", "needle"), [
    ("--model m", "--checkpoint_dir"),
    ("--use_inflight_batching", "batching_strategy inflight_fused_batching"),
    ("--paged_kv_cache", "--kv_cache_type paged"),
    ("--max_output_len 512", "--max_seq_len (= input + output)"),
    ("--use_fp8", "convert_checkpoint.py --use_fp8"),
    ("--use_smooth_quant", "--smoothquant 0.5"),
    ("--use_weight_only", "--weight_only_precision"),
    ("--use_awq", "--qformat int4_awq"),
    ("--use_cuda_graph", "cuda_graph_mode"),
    ("--tp_size 2", "fixed at conversion"),
    ("--pp_size 2", "fixed at conversion"),
    ("--max_batch_size", "needs a value"),
    ("--context_fmha", "--context_fmha enable"),
])  # fmt: skip
def test_old_notes_flags_on_trtllm_build_are_rejected_naming_the_right_flag(flag, needle):
    report = validate_command(f"trtllm-build --checkpoint_dir c --max_input_len 1024 --max_seq_len 1536 {flag}")
    assert not report.ok
    assert any(needle in e for e in report.errors), report.errors


def test_bare_paged_kv_cache_is_an_error_and_a_valued_one_a_deprecation_warning():
    bare = validate_command("trtllm-build --checkpoint_dir c --max_seq_len 10 --paged_kv_cache")
    valued = validate_command("trtllm-build --checkpoint_dir c --max_seq_len 10 --paged_kv_cache enable")
    assert not bare.ok
    assert valued.ok and any("use --kv_cache_type paged" in w for w in valued.warnings)


@pytest.mark.parametrize(("command", "needle"), [
    ("python3 convert_checkpoint.py --model_dir m --max_output_len 256", "trtllm-build --max_seq_len"),
    ("python3 convert_checkpoint.py --model_dir m --max_batch_size 8", "build limits belong to trtllm-build"),
    ("python3 convert_checkpoint.py --model_dir m --use_smooth_quant", "--smoothquant ALPHA"),
    ("python3 convert_checkpoint.py --model_dir m --qformat fp8", "quantize.py"),
    ("python3 convert_checkpoint.py --model_dir m --world_size 2", "--tp_size N --pp_size M"),
    ("python3 convert_checkpoint.py --model_dir m --use_fp8 --use_weight_only", "choose one"),
    ("python3 convert_checkpoint.py --model_dir m --smoothquant 1.5", "outside [0, 1]"),
    ("python3 convert_checkpoint.py --model_dir m --int8_kv_cache --fp8_kv_cache", "one KV cache format"),
    ("python3 convert_checkpoint.py --model_dir m --dtype fp16", "not one of auto, float16"),
    ("python3 convert_checkpoint.py --model_dir m --tp_size two", "needs an integer"),
    ("python3 convert_checkpoint.py --model_dir m --tp_size 0", "must be 1 or more"),
    ("python3 convert_checkpoint.py --model_dir m --use_weight_only int8", "takes no value"),
    ("python3 convert_checkpoint.py --output_dir c", "needs --model_dir"),
    ("python3 quantize.py --model_dir m --use_fp8", "--qformat fp8"),
    ("python3 quantize.py --model_dir m --qformat int3", "not one of nvfp4"),
    ("python3 quantize.py --qformat fp8", "needs --model_dir"),
    ("trtllm-build --checkpoint_dir c --max_input_len 1024 --max_seq_len 512", "counts prompt + output"),
    ("trtllm-build --checkpoint_dir c --multiple_profiles enable --opt_num_tokens 8", "cannot be combined"),
    ("trtllm-build --checkpoint_dir c --gather_context_logits --max_draft_len 4", "--max_draft_len > 0"),
    ("trtllm-build --checkpoint_dir c --max_input_len 4096 --max_num_tokens 1024 --use_paged_context_fmha disable",
     "cannot be scheduled"),
    ("trtllm-build --checkpoint_dir c --kv_cache_type pagd", "not one of continuous, paged, disabled"),
    ("trtllm-build --checkpoint_dir c --max", "ambiguous"),
    ("trtllm-build --checkpoint_dir c --max_batch_sizee 8", "did you mean --max_batch_size"),
    ("trtllm-build --checkpoint_dir c stray", "no positional"),
    ("docker run --gpus all image", "not a TensorRT-LLM engine-workflow command"),
])  # fmt: skip
def test_command_lines_that_the_tools_refuse_or_misread(command, needle):
    report = validate_command(command)
    assert not report.ok
    assert any(needle in e for e in report.errors), report.errors


def test_a_correct_multiline_workflow_from_the_lab_passes():
    convert = """python3 /app/examples/models/core/llama/convert_checkpoint.py --model_dir /models/tinyllama \\
        --output_dir /ckpt --dtype float16 --tp_size 2 --smoothquant 0.5 --per_channel --per_token  # SmoothQuant"""
    build = ("trtllm-build --checkpoint_dir=/ckpt --output_dir /engine --max_batch_size 64 --max_input_len 2048 "
             "--max_seq_len 2560 --max_num_tokens 8192 --gemm_plugin auto --gpt_attention_plugin auto "
             "--kv_cache_type paged --use_fp8_context_fmha disable --lora_dir a b")  # fmt: skip
    quantize = "python examples/quantization/quantize.py --model_dir m --qformat int4_awq --awq_block_size 64"
    for command in (convert, build, quantize):
        report = validate_command(command)
        assert report.ok and not report.warnings, (report.errors, report.warnings)
    assert validate_command(build).args["--lora_dir"] == ["a", "b"]
    assert validate_command(convert).args["--smoothquant"] == "0.5"


def test_abbreviations_argparse_accepts_are_warnings_to_write_in_full():
    report = validate_command("python3 convert_checkpoint.py --model m --output_dir c")
    assert report.ok and report.args["--model_dir"] == "m"
    assert any("write --model_dir in full" in w for w in report.warnings)


def test_short_alias_and_negative_numbers_parse_like_argparse():
    report = validate_command("python3 convert_checkpoint.py --model_dir m -sq 0.8 --moe_tp_size -1")
    assert report.ok, report.errors
    assert report.args["--smoothquant"] == "0.8" and report.args["--moe_tp_size"] == "-1"


# ------------------------------------------------------------------------------------- the recorded tables
def _sample(flag) -> list[str]:
    if flag.arity == 0:
        return []
    value = flag.choices[0] if flag.choices else {"int": "1", "float": "0.5"}.get(flag.kind, "x")
    return [value, value] if flag.arity == "+" else [value]


@pytest.mark.parametrize("tool", TOOLS)
def test_every_recorded_flag_is_accepted_with_a_valid_value(tool):
    """The table of each tool (from the upstream file and commit in SOURCES) accepts each of its flags."""
    assert "@" in SOURCES[tool] and "NVIDIA/TensorRT-LLM" in SOURCES[tool]
    prefix = {"trtllm-build": ["trtllm-build"], "convert_checkpoint.py": ["python3", "convert_checkpoint.py"],
              "quantize.py": ["python3", "quantize.py"]}[tool]  # fmt: skip
    for name, flag in FLAGS[tool].items():
        report = validate_argv([*prefix, name, *_sample(flag)])
        assert not [e for e in report.errors if name in e], (name, report.errors)
        assert flag.name in report.args


def test_recorded_table_sizes_match_the_upstream_parsers():
    # counted by hand from the files in SOURCES (aliases excluded): build.py parse_arguments 39 options + the 28
    # cli_plugin_args of plugin.py; llama convert_checkpoint.py 51; quantize.py 30
    counts = {tool: len({f.name for f in FLAGS[tool].values()}) for tool in TOOLS}
    assert counts == {"trtllm-build": 39 + 28, "convert_checkpoint.py": 51, "quantize.py": 30}


@pytest.mark.parametrize("tool", TOOLS)
def test_no_wrong_flag_is_also_an_accepted_flag(tool):
    assert not set(WRONG[tool]) & set(FLAGS[tool])
