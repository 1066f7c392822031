"""Directories shaped like TensorRT-LLM 1.2 output, written by the tests (no TensorRT-LLM here: nothing was built).

The config.json layout follows engines trtllm-build writes: ``version``, ``pretrained_config`` (architecture, dtype,
mapping, quantization, ...) and ``build_config`` (limits, ``kv_cache_type`` as the enum name, ``plugin_config``,
``lora_config``); the rank files are empty stand-ins for ``rank<N>.engine``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def engine_config(
    *,
    dtype: str = "float16",
    tp: int = 1,
    pp: int = 1,
    quant_algo: str | None = None,
    kv_cache_quant_algo: str | None = None,
    max_batch_size: int = 64,
    max_input_len: int = 2048,
    max_seq_len: int = 2560,
    max_num_tokens: int = 8192,
    kv_cache_type: str = "PAGED",
) -> dict[str, Any]:
    return {
        "version": "1.2.1",
        "pretrained_config": {
            "architecture": "LlamaForCausalLM",
            "dtype": dtype,
            "vocab_size": 32000,
            "hidden_size": 2048,
            "num_hidden_layers": 22,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "max_position_embeddings": 4096,
            "mapping": {
                "world_size": tp * pp,
                "gpus_per_node": 8,
                "cp_size": 1,
                "tp_size": tp,
                "pp_size": pp,
                "moe_tp_size": tp,
                "moe_ep_size": 1,
            },
            "quantization": {
                "quant_algo": quant_algo,
                "kv_cache_quant_algo": kv_cache_quant_algo,
                "group_size": 128,
                "has_zero_point": False,
                "pre_quant_scale": False,
                "exclude_modules": None,
            },
        },
        "build_config": {
            "max_input_len": max_input_len,
            "max_seq_len": max_seq_len,
            "opt_batch_size": None,
            "max_batch_size": max_batch_size,
            "max_beam_width": 1,
            "max_num_tokens": max_num_tokens,
            "opt_num_tokens": None,
            "max_prompt_embedding_table_size": 0,
            "kv_cache_type": kv_cache_type,
            "gather_context_logits": False,
            "gather_generation_logits": False,
            "strongly_typed": True,
            "lora_config": {"lora_dir": [], "lora_ckpt_source": "hf", "max_lora_rank": 64},
            "plugin_config": {
                "dtype": dtype,
                "gpt_attention_plugin": "auto",
                "gemm_plugin": "auto",
                "context_fmha": True,
                "paged_kv_cache": True,
                "remove_input_padding": True,
                "tokens_per_block": 32,
                "use_paged_context_fmha": True,
            },
        },
    }


def write_engine_dir(directory: Path, ranks: int | None = None, **config: Any) -> Path:
    """config.json plus empty rank<N>.engine files (one per tp x pp rank unless ``ranks`` says otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = engine_config(**config)
    (directory / "config.json").write_text(json.dumps(data, indent=4))
    mapping = data["pretrained_config"]["mapping"]
    for rank in range(mapping["tp_size"] * mapping["pp_size"] if ranks is None else ranks):
        (directory / f"rank{rank}.engine").write_bytes(b"")
    return directory
