"""The command-line flags of the TensorRT-LLM 1.2.x engine workflow, as recorded from the upstream argparse code.

Each table lists every flag the tool's parser accepts (name, how many values, allowed values); ``SOURCES`` says
which upstream file and commit each table was read from. The tables are our own transcription, not upstream code.
``WRONG`` maps flags that old notes and blog posts use, and that the 1.2 tools refuse or misread, to the message
naming the right flag or place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Tool = Literal["trtllm-build", "convert_checkpoint.py", "quantize.py"]
TOOLS: tuple[Tool, ...] = ("trtllm-build", "convert_checkpoint.py", "quantize.py")

SOURCES: dict[Tool, str] = {
    "trtllm-build": "NVIDIA/TensorRT-LLM tensorrt_llm/commands/build.py @ 65f1d1536e18aea3380e6e270e00895a709333eb "
    "(parse_arguments) and tensorrt_llm/plugin/plugin.py @ c20322ffd3dc0740ca530c9fad989b22e64f6e06 "
    "(cli_plugin_args, add_plugin_argument)",
    "convert_checkpoint.py": "NVIDIA/TensorRT-LLM examples/models/core/llama/convert_checkpoint.py "
    "@ fd96a08bdc489f41f139b295935b10ed43652fa1 (parse_arguments)",
    "quantize.py": "NVIDIA/TensorRT-LLM examples/quantization/quantize.py @ c8c6df08bd0ead54cd47f7973e1e425c28a174cd",
}

ValueKind = Literal["int", "float", "str"]


@dataclass(frozen=True)
class Flag:
    """One argparse option: ``arity`` 0 is a store_true switch, 1 one value, "?" an optional value, "+" one or more."""

    name: str
    arity: int | str = 1
    kind: ValueKind = "str"
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    case_insensitive: bool = False


def _table(*flags: Flag) -> dict[str, Flag]:
    table: dict[str, Flag] = {}
    for flag in flags:
        for name in (flag.name, *flag.aliases):
            table[name] = flag
    return table


def _ints(*names: str) -> list[Flag]:
    return [Flag(n, kind="int") for n in names]


def _strs(*names: str) -> list[Flag]:
    return [Flag(n) for n in names]


def _switches(*names: str) -> list[Flag]:
    return [Flag(n, arity=0) for n in names]


def _choice(name: str, *choices: str, **kw: object) -> Flag:
    return Flag(name, choices=choices, **kw)  # type: ignore[arg-type]


ENABLE_DISABLE = ("enable", "disable")
PLUGIN_DTYPES = ("auto", "float16", "float32", "bfloat16", "int32", "disable")

# --------------------------------------------------------------------------------------------- trtllm-build
TRTLLM_BUILD = _table(
    *_strs("--checkpoint_dir", "--model_config", "--build_config", "--model_cls_file", "--model_cls_name"),
    *_strs("--output_dir", "--input_timing_cache", "--output_timing_cache", "--visualize_network"),
    *_ints("--max_batch_size", "--max_input_len", "--max_beam_width", "--max_num_tokens", "--opt_num_tokens"),
    *_ints("--max_encoder_input_len", "--workers", "--max_lora_rank", "--max_draft_len", "--tokens_per_block"),
    Flag("--max_seq_len", kind="int", aliases=("--max_decoder_seq_len",)),
    Flag("--max_prompt_embedding_table_size", kind="int", aliases=("--max_multimodal_len",)),
    _choice("--kv_cache_type", "continuous", "paged", "disabled", case_insensitive=True),
    Flag("--paged_kv_cache"),  # deprecated upstream; takes a value (see WRONG)
    _choice("--profiling_verbosity", "layer_names_only", "detailed", "none"),
    _choice("--log_level", "internal_error", "error", "warning", "info", "verbose", "debug", "trace"),
    _choice("--logits_dtype", "float16", "float32"),
    _choice("--lora_ckpt_source", "hf", "nemo"),
    _choice(
        "--speculative_decoding_mode",
        "draft_tokens_external",
        "lookahead_decoding",
        "medusa",
        "explicit_draft_tokens",
        "eagle",
    ),
    *_switches("--strip_plan", "--weight_sparsity", "--weight_streaming", "--fast_build", "--enable_debug_output"),
    *_switches("--dry_run", "--monitor_memory", "--gather_context_logits", "--gather_generation_logits"),
    *_switches("--gather_all_token_logits"),
    Flag("--lora_dir", arity="+"),
    Flag("--lora_target_modules", arity="+"),
    # plugins (plugin.py cli_plugin_args): dtype plugins, then enable/disable features
    *[
        _choice(f"--{n}", *PLUGIN_DTYPES)
        for n in (
            "bert_attention_plugin",
            "gpt_attention_plugin",
            "fp8_rowwise_gemm_plugin",
            "lora_plugin",
            "moe_plugin",
            "mamba_conv1d_plugin",
            "nccl_plugin",
        )
    ],
    _choice("--gemm_plugin", "auto", "float16", "float32", "bfloat16", "int32", "fp8", "nvfp4", "disable"),
    _choice("--gemm_swiglu_plugin", "fp8", "disable"),
    _choice("--low_latency_gemm_plugin", "fp8", "disable"),
    _choice("--low_latency_gemm_swiglu_plugin", "fp8", "disable"),
    _choice("--gemm_allreduce_plugin", "float16", "bfloat16", "disable"),
    *[
        _choice(f"--{n}", *ENABLE_DISABLE)
        for n in (
            "dora_plugin",
            "context_fmha",
            "bert_context_fmha_fp32_acc",
            "remove_input_padding",
            "use_paged_context_fmha",
            "use_fp8_context_fmha",
            "fuse_fp4_quant",
            "multiple_profiles",
            "paged_state",
            "streamingllm",
            "norm_quant_fusion",
            "reduce_fusion",
            "user_buffer",
            "use_fused_mlp",
            "pp_reduce_scatter",
        )
    ],
)

# ------------------------------------------------------------------------------ convert_checkpoint.py (llama)
CONVERT_CHECKPOINT = _table(
    *_strs("--model_dir", "--meta_ckpt_dir", "--calib_dataset", "--quant_ckpt_path", "--hidden_act", "--output_dir"),
    *_strs("--log_level"),
    *_ints("--tp_size", "--pp_size", "--moe_tp_size", "--cp_size", "--moe_ep_size", "--vocab_size", "--n_positions"),
    *_ints("--n_layer", "--n_head", "--n_kv_head", "--n_embd", "--inter_size", "--multiple_of", "--calib_size"),
    *_ints("--calib_max_seq_length", "--group_size", "--workers", "--moe_num_experts", "--moe_top_k"),
    *_ints("--moe_renorm_mode"),
    *[Flag(n, kind="float") for n in ("--ffn_dim_multiplier", "--rms_norm_eps", "--rotary_base")],
    Flag("--smoothquant", kind="float", aliases=("-sq",)),
    _choice("--dtype", "auto", "float16", "bfloat16", "float32"),
    Flag("--weight_only_precision", arity="?", choices=("int8", "int4", "int8_gptq", "int4_gptq", "int4_awq")),
    _choice("--embedding_sharding_dim", "0", "1"),
    *_switches("--use_weight_only", "--disable_weight_only_quant_plugin", "--use_qserve", "--per_channel"),
    *_switches("--per_token", "--int8_kv_cache", "--fp8_kv_cache", "--use_fp8", "--use_nvfp4", "--use_fp8_rowwise"),
    *_switches("--use_meta_fp8_rowwise_recipe", "--per_group", "--load_by_shard", "--load_model_on_cpu"),
    *_switches("--use_parallel_embedding", "--save_config_only", "--remove_duplicated_kv_heads"),
)

# ------------------------------------------------------------------------------------------------ quantize.py
QFORMATS = ("nvfp4", "fp8", "fp8_pc_pt", "int8_sq", "int4_awq", "w4a8_awq", "int8_wo", "int4_wo", "full_prec")
QUANTIZE = _table(
    *_strs("--model_dir", "--nemo_ckpt_path", "--calib_dataset", "--output_dir", "--medusa_hidden_act"),
    *_strs("--medusa_model_dir", "--autoq_format"),
    _choice("--decoder_type", "gptnext", "llama"),
    _choice("--device", "cuda", "cpu"),
    _choice("--device_map", "auto", "sequential", "cpu", "gpu"),
    _choice("--dtype", "auto", "float16", "bfloat16", "float32"),
    _choice("--qformat", *QFORMATS),
    _choice("--kv_cache_dtype", "int8", "fp8"),
    *_ints("--calib_tp_size", "--calib_pp_size", "--seed", "--tokenizer_max_seq_length", "--batch_size"),
    *_ints("--calib_size", "--calib_max_seq_length", "--tp_size", "--pp_size", "--cp_size", "--awq_block_size"),
    *_ints("--num_medusa_heads", "--num_medusa_layers", "--max_draft_len"),
    Flag("--auto_quantize_bits", kind="float"),
    *_switches("--quantize_lm_head", "--quant_medusa_head"),
)

FLAGS: dict[Tool, dict[str, Flag]] = {
    "trtllm-build": TRTLLM_BUILD,
    "convert_checkpoint.py": CONVERT_CHECKPOINT,
    "quantize.py": QUANTIZE,
}

# ------------------------------------------------------------------------------ flags from the old notes
_AT_CONVERSION = (
    "quantization is chosen when the checkpoint is converted, not at build: convert_checkpoint.py --use_fp8 | "
    "--smoothquant 0.5 --per_channel --per_token | --use_weight_only --weight_only_precision int8|int4, "
    "or examples/quantization/quantize.py --qformat fp8|int8_sq|int4_awq"
)
_TP_PP = (
    "tensor/pipeline parallelism is fixed at conversion: convert_checkpoint.py (or quantize.py) --tp_size N --pp_size M"
)
_CUDA_GRAPH = (
    "--use_cuda_graph is no such flag: CUDA graphs are a runtime setting — cuda_graph_mode in the tensorrt_llm "
    "model's config.pbtxt parameters (or cuda_graph_config in the LLM API)"
)
_LIMITS = "build limits belong to trtllm-build (--max_batch_size, --max_input_len, --max_seq_len, --max_num_tokens)"

WRONG: dict[Tool, dict[str, str]] = {
    "trtllm-build": {
        "--model": "trtllm-build has no --model: it builds from a converted checkpoint, --checkpoint_dir CKPT "
        "(make CKPT with convert_checkpoint.py --model_dir HF --output_dir CKPT)",
        "--model_dir": "trtllm-build does not read a HuggingFace --model_dir: pass the converted checkpoint with "
        "--checkpoint_dir CKPT (convert_checkpoint.py --model_dir HF --output_dir CKPT makes it)",
        "--use_inflight_batching": "--use_inflight_batching is not a build flag: in-flight batching is chosen when "
        "serving — batching_strategy inflight_fused_batching (parameter gpt_model_type in the tensorrt_llm "
        "model's config.pbtxt)",
        "--max_output_len": "--max_output_len was removed: use --max_seq_len (= input + output)",
        "--use_fp8": "--use_fp8 is a conversion flag, not a build flag: " + _AT_CONVERSION,
        "--use_smooth_quant": "--use_smooth_quant is an old flag: " + _AT_CONVERSION,
        "--use_weight_only": "--use_weight_only is a conversion flag, not a build flag: " + _AT_CONVERSION,
        "--weight_only_precision": "--weight_only_precision is a conversion flag: " + _AT_CONVERSION,
        "--use_awq": "--use_awq is no flag: AWQ runs in examples/quantization/quantize.py --qformat int4_awq",
        "--smoothquant": "--smoothquant is a conversion flag: " + _AT_CONVERSION,
        "--per_channel": "--per_channel is a conversion flag: " + _AT_CONVERSION,
        "--per_token": "--per_token is a conversion flag: " + _AT_CONVERSION,
        "--int8_kv_cache": "--int8_kv_cache is a conversion flag (convert_checkpoint.py --int8_kv_cache, or "
        "quantize.py --kv_cache_dtype int8)",
        "--fp8_kv_cache": "--fp8_kv_cache is a conversion flag (convert_checkpoint.py --fp8_kv_cache, or "
        "quantize.py --kv_cache_dtype fp8)",
        "--qformat": "--qformat belongs to examples/quantization/quantize.py, not trtllm-build",
        "--use_cuda_graph": _CUDA_GRAPH,
        "--tp_size": "trtllm-build has no --tp_size: " + _TP_PP,
        "--pp_size": "trtllm-build has no --pp_size: " + _TP_PP,
        "--world_size": "trtllm-build has no --world_size: " + _TP_PP,
        "--auto_parallel": "auto parallel was removed from trtllm-build in 1.x: " + _TP_PP,
        "--gpus_per_node": "--gpus_per_node went with auto parallel (removed in 1.x): " + _TP_PP,
        "--cluster_key": "--cluster_key went with auto parallel (removed in 1.x): " + _TP_PP,
        "--use_gpt_attention_plugin": "the flag is --gpt_attention_plugin auto (the old build.py spelling was removed)",
        "--use_gemm_plugin": "the flag is --gemm_plugin auto (the old build.py spelling was removed)",
        "--enable_context_fmha": "the flag is --context_fmha enable",
        "--enable_xqa": "--enable_xqa was removed (0.16): XQA is chosen at runtime",
        "--use_custom_all_reduce": "--use_custom_all_reduce was removed: all-reduce strategy is a runtime choice",
        "--builder_force_num_profiles": "--builder_force_num_profiles moved to the environment variable "
        "BUILDER_FORCE_NUM_PROFILES",
        "--dtype": "trtllm-build takes the dtype from the checkpoint: set it at conversion "
        "(convert_checkpoint.py --dtype float16|bfloat16)",
    },
    "convert_checkpoint.py": {
        "--max_output_len": "--max_output_len was removed (and limits are not conversion flags): "
        "use trtllm-build --max_seq_len (= input + output)",
        "--max_batch_size": _LIMITS,
        "--max_input_len": _LIMITS,
        "--max_seq_len": _LIMITS,
        "--max_num_tokens": _LIMITS,
        "--use_smooth_quant": "the flag is --smoothquant ALPHA (e.g. --smoothquant 0.5 --per_channel --per_token)",
        "--use_awq": "AWQ runs in examples/quantization/quantize.py --qformat int4_awq",
        "--qformat": "--qformat belongs to examples/quantization/quantize.py; convert_checkpoint.py uses "
        "--use_fp8 | --smoothquant A | --use_weight_only --weight_only_precision P",
        "--world_size": "there is no --world_size: give --tp_size N --pp_size M (world size = N x M)",
        "--use_cuda_graph": _CUDA_GRAPH,
        "--use_inflight_batching": "in-flight batching is a serving setting (batching_strategy "
        "inflight_fused_batching in config.pbtxt), not a conversion flag",
        "--paged_kv_cache": "the KV cache layout is a build setting: trtllm-build --kv_cache_type paged",
        "--checkpoint_dir": "convert_checkpoint.py reads --model_dir HF and writes --output_dir CKPT; "
        "--checkpoint_dir belongs to trtllm-build",
    },
    "quantize.py": {
        "--use_fp8": "quantize.py selects the format with --qformat fp8",
        "--use_weight_only": "quantize.py selects the format with --qformat int8_wo|int4_wo",
        "--weight_only_precision": "quantize.py selects the format with --qformat int8_wo|int4_wo",
        "--smoothquant": "quantize.py selects SmoothQuant with --qformat int8_sq",
        "--use_awq": "quantize.py selects AWQ with --qformat int4_awq (or w4a8_awq)",
        "--fp8_kv_cache": "quantize.py sets the KV cache format with --kv_cache_dtype fp8",
        "--int8_kv_cache": "quantize.py sets the KV cache format with --kv_cache_dtype int8",
        "--max_output_len": "--max_output_len was removed: use trtllm-build --max_seq_len (= input + output)",
        "--max_batch_size": _LIMITS,
        "--max_input_len": _LIMITS,
        "--max_seq_len": _LIMITS,
        "--use_cuda_graph": _CUDA_GRAPH,
        "--world_size": "there is no --world_size: give --tp_size N --pp_size M (world size = N x M)",
    },
}
