"""Phase 1 against real transformers and safetensors: the converted checkpoint computes what the HF model does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tritonlab.engine.convert import checkpoint_bytes, convert_checkpoint, load_checkpoint
from tritonlab.engine.network import EngineDecoder, full_logits
from tritonlab.errors import TritonLabError

PROMPTS = ["the server loads a model and answers requests", "once upon a time there was a small model"]


def _hf_logits(llama_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    tok = Tokenizer.from_file(str(llama_dir / "tokenizer.json"))
    ids = [tok.encode(p).ids for p in PROMPTS]
    width = min(len(i) for i in ids)
    input_ids = torch.tensor([i[:width] for i in ids])
    model = LlamaForCausalLM.from_pretrained(llama_dir).eval()
    with torch.no_grad():
        return input_ids, model(input_ids).logits.float()


def _converted_logits(ckpt: Path, input_ids: torch.Tensor) -> torch.Tensor:
    config, tensors = load_checkpoint(ckpt)
    return full_logits(EngineDecoder(config, tensors).eval(), input_ids, max_seq_len=input_ids.shape[1])


@pytest.mark.parametrize(
    ("dtype", "weight_only", "atol", "min_argmax_agreement"),
    [("float32", None, 1e-4, 1.0), ("float16", None, 5e-2, 0.95), ("bfloat16", None, 0.3, 0.9),
     ("float32", "int8", 0.5, 0.9)],
)  # fmt: skip
def test_converted_logits_match_transformers(llama_dir, tmp_path, dtype, weight_only, atol, min_argmax_agreement):
    input_ids, reference = _hf_logits(llama_dir)
    ckpt = convert_checkpoint(llama_dir, tmp_path / "ckpt", dtype=dtype, weight_only=weight_only)
    logits = _converted_logits(ckpt, input_ids)
    error = (logits - reference).abs().max().item()
    agreement = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    assert error <= atol, f"{dtype}/{weight_only}: max |logit error| {error:.4g} > {atol}"
    assert agreement >= min_argmax_agreement, f"{dtype}/{weight_only}: greedy tokens agree on {agreement:.0%}"
    if dtype == "float32" and weight_only is None:
        assert error < 1e-4  # the same math: only float rounding differs


def test_checkpoint_layout_like_trtllm(llama_dir, checkpoint_dir):
    config = json.loads((checkpoint_dir / "config.json").read_text())
    assert config["architecture"] == "LlamaForCausalLM" and config["dtype"] == "float32"
    assert config["mapping"] == {"world_size": 1, "tp_size": 1, "pp_size": 1}
    assert config["quantization"]["quant_algo"] is None
    assert sorted(p.name for p in checkpoint_dir.glob("rank*.safetensors")) == ["rank0.safetensors"]
    with safe_open(checkpoint_dir / "rank0.safetensors", "pt") as f:
        names = set(f.keys())
    hf = json.loads((llama_dir / "config.json").read_text())
    qkv_rows = (hf["num_attention_heads"] + 2 * hf["num_key_value_heads"]) * (
        hf["hidden_size"] // hf["num_attention_heads"]
    )
    assert {"transformer.vocab_embedding.weight", "transformer.ln_f.weight", "lm_head.weight"} <= names
    assert "transformer.layers.0.attention.qkv.weight" in names and "model.embed_tokens.weight" not in names
    _, tensors = load_checkpoint(checkpoint_dir)
    assert tensors["transformer.layers.0.attention.qkv.weight"].shape == (qkv_rows, hf["hidden_size"])


def test_int8_weight_only_stores_int8_with_per_channel_scales(llama_dir, checkpoint_dir, tmp_path):
    ckpt = convert_checkpoint(llama_dir, tmp_path / "int8", weight_only="int8")
    config, tensors = load_checkpoint(ckpt)
    assert config["quantization"]["quant_algo"] == "W8A16"
    qkv = tensors["transformer.layers.0.mlp.fc.weight"]
    scale = tensors["transformer.layers.0.mlp.fc.per_channel_scale"]
    assert qkv.dtype == torch.int8 and scale.shape == (qkv.shape[0],) and scale.dtype == torch.float32
    assert tensors["transformer.layers.0.input_layernorm.weight"].dtype == torch.float32  # norms stay in dtype
    # Real int8 storage: the linears take a quarter of their float32 bytes, so the file shrinks a lot.
    assert checkpoint_bytes(ckpt) < 0.4 * checkpoint_bytes(checkpoint_dir)


def test_float16_halves_the_checkpoint(llama_dir, checkpoint_dir, tmp_path):
    ckpt = convert_checkpoint(llama_dir, tmp_path / "fp16", dtype="float16")
    assert abs(checkpoint_bytes(ckpt) / checkpoint_bytes(checkpoint_dir) - 0.5) < 0.01


def test_tokenizer_is_the_same_in_another_process(llama_dir):
    # Rust hash maps are seeded per process: train again in a fresh interpreter and compare the whole vocabulary.
    code = "from tritonlab.engine.model import build_tokenizer; print(build_tokenizer().to_str())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from tokenizers import Tokenizer

    here = Tokenizer.from_file(str(llama_dir / "tokenizer.json")).get_vocab()
    assert Tokenizer.from_str(other.strip()).get_vocab() == here


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tp_size": 2}, "one device"), ({"dtype": "float64"}, "not supported"), ({"weight_only": "int4"}, "int4")],
)
def test_conversion_errors_are_clear(llama_dir, tmp_path, kwargs, message):
    with pytest.raises(TritonLabError, match=message) as info:
        convert_checkpoint(llama_dir, tmp_path / "bad", **kwargs)
    assert info.value.fix


def test_not_a_model_directory(tmp_path):
    with pytest.raises(TritonLabError, match="not a Hugging Face model directory"):
        convert_checkpoint(tmp_path, tmp_path / "out")
