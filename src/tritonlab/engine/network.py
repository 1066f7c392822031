"""The engine's network: the Llama decoder written once more in plain torch, over a converted checkpoint, with a
KV cache interface the serving loop drives. This is what the build exports and compiles (like TRT-LLM's own
``LLaMAForCausalLM`` network definition, which is not the Hugging Face module either).

One step function serves both phases of generation:

- prefill: ``input_ids`` holds a whole prompt (``T`` = prompt length, usually batch 1);
- decode: ``input_ids`` holds one new token per running sequence (``T`` = 1, batch = running sequences);
- packed (CPU engines, the runtime's form for both): ``T`` = 1 and one row per token, a prompt's tokens on
  consecutive rows of its slot beside the running sequences' new tokens (the ragged kernel lets a row see the earlier
  rows of its slot).

``start_pos[b]`` is how many tokens sequence ``b`` already has in the cache, ``slots[b]`` which cache slot it owns.
The step reads the cache (gathering the batch's slots) and returns the keys/values of the new tokens; the caller
writes them into the slots. Keeping the cache write outside the compiled graph keeps the graph free of input
mutation, and the write is a cheap ``index_put``.

Attention comes in two forms (``attention=``):

- ``ragged`` (CPU builds): the ``tritonlab::ragged_attention`` kernel (attention.py) reads each sequence's own cached
  positions, as TensorRT-LLM's attention kernels read each sequence's valid KV length. In-flight batching mixes long
  and just-started sequences, and the short ones pay nothing for the long one's length.
- ``padded`` (GPU builds, where Inductor generates the kernels): ``cache_window`` ([L] int64, ``arange(L)``) is the
  positions attention reads, ``L`` the longest sequence of the batch after this step; every sequence reads L
  positions, masked by its own length. Its *size* is a dynamic dimension of the compiled graph; without it every step
  would attend over all ``max_seq_len`` positions (on a CPU, three quarters of a decode step at max_seq_len=320).
  The ragged form takes ``cache_window`` too (one interface) and ignores it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Importing attention registers the tritonlab::ragged_attention op the ragged form calls.
from tritonlab.engine.attention import ATTENTION


class EngineDecoder(nn.Module):
    """``forward(input_ids, start_pos, slots, k_cache, v_cache, cache_window) -> (logits, new_k, new_v)``.

    Shapes: ``input_ids`` [B, T] int64; ``start_pos``, ``slots`` [B] int64; caches [layers, slots, kv_heads,
    max_seq_len, head_size]; ``cache_window`` [L] int64 (``arange(L)``, L >= every ``start_pos + T``); ``logits``
    [B, T, vocab] float32; ``new_k``/``new_v`` [layers, B, kv_heads, T, head_size].
    """

    def __init__(self, config: dict[str, Any], tensors: dict[str, torch.Tensor], attention: str = "padded"):
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"attention={attention!r}: use one of {ATTENTION}")
        self.ragged = attention == "ragged"
        self.layers = config["num_hidden_layers"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config["num_key_value_heads"]
        self.head_size = config["head_size"]
        self.eps = float(config["norm_epsilon"])
        self.dtype = getattr(torch, config["dtype"])
        self.int8 = config.get("quantization", {}).get("quant_algo") == "W8A16"
        half = torch.arange(0, self.head_size, 2, dtype=torch.float32) / self.head_size
        self.register_buffer("inv_freq", 1.0 / (float(config["rotary_base"]) ** half), persistent=False)
        for name, tensor in tensors.items():
            self.register_buffer(_buffer_name(name), tensor.clone(), persistent=False)

    def _w(self, name: str) -> torch.Tensor:
        return getattr(self, _buffer_name(name))

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        weight = self._w(name + ".weight")
        if self.int8:
            # Weight-only int8: dequantize on the fly (Inductor fuses the cast into the GEMM's operand load).
            scale = self._w(name + ".per_channel_scale")
            return (x @ weight.to(x.dtype).t()) * scale
        return x @ weight.t()

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        # Llama's RMSNorm, computed in float32 like transformers does.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(self.dtype) * self._w(name)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., : self.head_size // 2], x[..., self.head_size // 2 :]
        rotated = torch.cat((-x2, x1), dim=-1)
        return (x.float() * cos + rotated.float() * sin).to(self.dtype)

    def _padded_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        slots: torch.Tensor,
        positions: torch.Tensor,
        cache_window: torch.Tensor,
    ) -> torch.Tensor:
        """Attention over the batch's first L cache positions, masked by position; [B, heads, T, D] float32."""
        batch, _, steps, _ = q.shape
        window = cache_window.shape[0]
        # Query t of sequence b sees every position up to its own (start_pos + t): the cache below start_pos
        # and the new tokens up to itself (causal).
        visible = (cache_window[None, None, :] <= positions[:, :, None])[:, None, None]  # [B, 1, 1, T, L]
        scatter_at = positions[:, None, :, None].expand(batch, self.kv_heads, steps, self.head_size)
        groups = self.heads // self.kv_heads
        # The new keys/values go into a copy of the batch's cache rows (their first L positions) at their
        # positions; attention runs over those L positions, masked by position.
        keys = k_cache[slots][:, :, :window].scatter(2, scatter_at, k).float()  # [B, kv_heads, L, D]
        values = v_cache[slots][:, :, :window].scatter(2, scatter_at, v).float()
        # Grouped-query attention: the query heads sharing one key/value head are stacked along the query axis
        # ([B, kv_heads, groups * T, D]) and meet that head's keys once: no key/value head is repeated in memory.
        qg = q.reshape(batch, self.kv_heads, groups * steps, self.head_size).float() * (self.head_size**-0.5)
        scores = (qg @ keys.transpose(-1, -2)).reshape(batch, self.kv_heads, groups, steps, window)
        probs = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
        attn = probs.reshape(batch, self.kv_heads, groups * steps, window) @ values  # [B, kv_heads, groups*T, D]
        return attn.reshape(batch, self.heads, steps, self.head_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        start_pos: torch.Tensor,
        slots: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        cache_window: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, steps = input_ids.shape
        offsets = torch.arange(steps, device=input_ids.device)
        positions = start_pos[:, None] + offsets[None, :]  # [B, T]
        freqs = positions[..., None].float() * self.inv_freq  # [B, T, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, T, D]
        cos, sin = emb.cos(), emb.sin()
        q_size, kv_size = self.heads * self.head_size, self.kv_heads * self.head_size

        x = self._w("transformer.vocab_embedding.weight")[input_ids]
        new_keys, new_values = [], []
        for i in range(self.layers):
            p = f"transformer.layers.{i}."
            h = self._norm(x, p + "input_layernorm.weight")
            qkv = self._linear(h, p + "attention.qkv")
            q, k, v = qkv.split((q_size, kv_size, kv_size), dim=-1)
            q = self._rope(q.reshape(batch, steps, self.heads, self.head_size).transpose(1, 2), cos, sin)
            k = self._rope(k.reshape(batch, steps, self.kv_heads, self.head_size).transpose(1, 2), cos, sin)
            # contiguous(): a transposed slice of the fused qkv has strides export cannot reason about for T = 1.
            v = v.reshape(batch, steps, self.kv_heads, self.head_size).transpose(1, 2).contiguous()
            new_keys.append(k)
            new_values.append(v)
            if self.ragged:
                # Each sequence reads only its own cached positions (attention.py): no copy of the cache rows.
                attn = torch.ops.tritonlab.ragged_attention(q.float(), k, v, k_cache[i], v_cache[i], start_pos, slots)
            else:
                attn = self._padded_attention(q, k, v, k_cache[i], v_cache[i], slots, positions, cache_window)
            attn = attn.to(self.dtype).transpose(1, 2).reshape(batch, steps, q_size)
            x = x + self._linear(attn, p + "attention.dense")
            h = self._norm(x, p + "post_layernorm.weight")
            gate = self._linear(h, p + "mlp.gate")
            x = x + self._linear(nn.functional.silu(gate) * self._linear(h, p + "mlp.fc"), p + "mlp.proj")
        x = self._norm(x, "transformer.ln_f.weight")
        logits = x @ self._w("lm_head.weight").t()  # lm_head stays in dtype (TRT-LLM's weight-only default too)
        return logits.float(), torch.stack(new_keys), torch.stack(new_values)

    def empty_cache(
        self, slots: int, max_seq_len: int, device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.layers, slots, self.kv_heads, max_seq_len, self.head_size)
        return (
            torch.zeros(shape, dtype=self.dtype, device=device),
            torch.zeros(shape, dtype=self.dtype, device=device),
        )


def _buffer_name(name: str) -> str:
    return name.replace(".", "__")


def full_logits(module: EngineDecoder, input_ids: torch.Tensor, max_seq_len: int = 8) -> torch.Tensor:
    """Logits of every position of ``input_ids`` [B, T] with an empty cache (the conversion round-trip check)."""
    batch, steps = input_ids.shape
    k_cache, v_cache = module.empty_cache(batch, max_seq_len)
    zeros = torch.zeros(batch, dtype=torch.int64)
    with torch.no_grad():
        logits, _, _ = module(input_ids, zeros, torch.arange(batch), k_cache, v_cache, torch.arange(steps))
    return logits
