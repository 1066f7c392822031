"""Phase 1, convert: a Hugging Face Llama directory -> a checkpoint laid out like TensorRT-LLM's.

    ckpt = convert_checkpoint("work/hf", "work/ckpt", dtype="float16", weight_only="int8")

Output, as ``convert_checkpoint.py`` writes it: ``config.json`` (architecture, dtype, dimensions, ``quantization``,
``mapping``) and one ``rank<N>.safetensors`` per tensor x pipeline rank with TRT-LLM's tensor names (fused
``attention.qkv``, ``mlp.fc`` / ``mlp.gate`` / ``mlp.proj``, ``transformer.ln_f``, ``lm_head``). The embedded engine
runs on one device, so the mapping is always world size 1 (tensor/pipeline parallelism is Track A).

Weight-only int8 (TRT-LLM's ``W8A16``, ``--use_weight_only --weight_only_precision int8``): every linear weight is
stored as int8 with one float scale per output channel (``scale = max|w_row| / 127``); activations stay in
``dtype``. This is where quantization happens in the workflow: at conversion, not at build.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tritonlab.errors import TritonLabError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DTYPES = ("float32", "float16", "bfloat16")
Dtype = Literal["float32", "float16", "bfloat16"]
CHECKPOINT_VERSION = "tritonlab-embedded-1"
# The linear layers weight-only quantization applies to (TRT-LLM leaves embeddings and norms in dtype).
LINEAR_SUFFIXES = ("attention.qkv.weight", "attention.dense.weight", "mlp.fc.weight", "mlp.gate.weight")
LINEAR_SUFFIXES += ("mlp.proj.weight",)


def torch_dtype(name: str) -> torch.dtype:
    import torch

    if name not in DTYPES:
        raise TritonLabError(f"dtype {name!r} is not supported", fix=f"use one of: {', '.join(DTYPES)}")
    return getattr(torch, name)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``weight ~= q * scale[:, None]``; ``q`` is real int8 storage."""
    import torch

    w = weight.float()
    scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale


def _hf_to_trtllm(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    import torch

    out = {
        "transformer.vocab_embedding.weight": state["model.embed_tokens.weight"],
        "transformer.ln_f.weight": state["model.norm.weight"],
        "lm_head.weight": state.get("lm_head.weight", state["model.embed_tokens.weight"]),
    }
    for i in range(layers):
        hf, ours = f"model.layers.{i}.", f"transformer.layers.{i}."
        attn = hf + "self_attn."
        qkv = [state[attn + f"{p}_proj.weight"] for p in "qkv"]
        out[ours + "attention.qkv.weight"] = torch.cat(qkv, dim=0)  # one GEMM for q, k and v, as TRT-LLM fuses
        out[ours + "attention.dense.weight"] = state[attn + "o_proj.weight"]
        # TRT-LLM's Llama names: fc = up_proj, gate = gate_proj, proj = down_proj.
        out[ours + "mlp.fc.weight"] = state[hf + "mlp.up_proj.weight"]
        out[ours + "mlp.gate.weight"] = state[hf + "mlp.gate_proj.weight"]
        out[ours + "mlp.proj.weight"] = state[hf + "mlp.down_proj.weight"]
        out[ours + "input_layernorm.weight"] = state[hf + "input_layernorm.weight"]
        out[ours + "post_layernorm.weight"] = state[hf + "post_attention_layernorm.weight"]
    return out


def _pretrained_config(hf: dict[str, Any], dtype: str, weight_only: str | None) -> dict[str, Any]:
    heads = hf["num_attention_heads"]
    return {
        "version": CHECKPOINT_VERSION,
        "architecture": "LlamaForCausalLM",
        "dtype": dtype,
        "vocab_size": hf["vocab_size"],
        "hidden_size": hf["hidden_size"],
        "intermediate_size": hf["intermediate_size"],
        "num_hidden_layers": hf["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": hf.get("num_key_value_heads") or heads,
        "head_size": hf.get("head_dim") or hf["hidden_size"] // heads,
        "max_position_embeddings": hf["max_position_embeddings"],
        "hidden_act": hf.get("hidden_act", "silu"),
        "norm_epsilon": hf["rms_norm_eps"],
        "rotary_base": _rope_theta(hf),
        "bos_token_id": hf.get("bos_token_id"),
        "eos_token_id": hf.get("eos_token_id"),
        "quantization": {"quant_algo": "W8A16" if weight_only == "int8" else None, "per_channel": True},
        "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1},
    }


def _rope_theta(hf: dict[str, Any]) -> float:
    # transformers 5 moved rope_theta into rope_parameters; older configs have it at the top level.
    params = hf.get("rope_parameters") or {}
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def convert_checkpoint(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    dtype: Dtype = "float32",
    weight_only: Literal["int8"] | None = None,
    tp_size: int = 1,
    pp_size: int = 1,
) -> Path:
    """Convert a Hugging Face Llama directory; returns ``output_dir`` (config.json + rank0.safetensors)."""
    from safetensors.torch import load_file, save_file

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if tp_size != 1 or pp_size != 1:
        raise TritonLabError(
            f"tp_size={tp_size}, pp_size={pp_size}: the embedded engine runs on one device",
            fix="convert with tp_size=1, pp_size=1 here; tensor/pipeline parallelism is Track A (TensorRT-LLM)",
        )
    if weight_only not in (None, "int8"):
        raise TritonLabError(f"weight_only={weight_only!r} is not supported", fix="use weight_only='int8' or None")
    target = torch_dtype(dtype)
    hf_config_path = model_dir / "config.json"
    weights = sorted(model_dir.glob("*.safetensors"))
    if not hf_config_path.exists() or not weights:
        raise TritonLabError(
            f"{model_dir} is not a Hugging Face model directory (config.json + *.safetensors)",
            fix="make one with tritonlab.engine.model.make_llama(dir), or save_pretrained() your model there",
        )
    hf = json.loads(hf_config_path.read_text())
    if hf.get("model_type") != "llama":
        raise TritonLabError(f"model_type {hf.get('model_type')!r} is not llama", fix="convert a Llama-style model")
    state: dict[str, torch.Tensor] = {}
    for path in weights:
        state.update(load_file(path))
    tensors = {}
    for name, tensor in _hf_to_trtllm(state, hf["num_hidden_layers"]).items():
        if weight_only == "int8" and name.endswith(LINEAR_SUFFIXES):
            q, scale = quantize_int8(tensor)
            tensors[name] = q.contiguous()
            tensors[name.removesuffix("weight") + "per_channel_scale"] = scale.to(target).contiguous()
        else:
            tensors[name] = tensor.to(target).contiguous()
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob("rank*.safetensors"):
        stale.unlink()
    save_file(tensors, str(output_dir / "rank0.safetensors"), metadata={"format": "pt"})
    config = _pretrained_config(hf, dtype, weight_only)
    (output_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the engine's pre/post-processing needs these
        if (model_dir / name).exists():
            (output_dir / name).write_bytes((model_dir / name).read_bytes())
    return output_dir


def load_checkpoint(checkpoint_dir: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, tensors)`` of a converted checkpoint, checked for the files and names the build needs."""
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    config_path = checkpoint_dir / "config.json"
    if not config_path.exists():
        raise TritonLabError(
            f"{checkpoint_dir} has no config.json: not a converted checkpoint",
            fix="run convert_checkpoint(hf_dir, checkpoint_dir) first",
        )
    config = json.loads(config_path.read_text())
    world = config.get("mapping", {}).get("world_size", 1)
    missing = [f"rank{r}.safetensors" for r in range(world) if not (checkpoint_dir / f"rank{r}.safetensors").exists()]
    if missing:
        raise TritonLabError(
            f"{checkpoint_dir} lacks {', '.join(missing)} (config.json says world_size={world})",
            fix="convert again into an empty directory",
        )
    return config, load_file(checkpoint_dir / "rank0.safetensors")


def checkpoint_bytes(checkpoint_dir: str | Path) -> int:
    """Bytes of the weight files: float32 -> float16 halves them, int8 weight-only roughly quarters the linears."""
    return sum(p.stat().st_size for p in Path(checkpoint_dir).glob("rank*.safetensors"))
