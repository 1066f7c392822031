"""The lab-5 LLM, made here: a small Llama-style decoder with seeded random weights and a tokenizer trained locally.

    hf_dir = make_llama("work/hf")        # transformers LlamaForCausalLM + tokenizer, save_pretrained, no download

Nothing is downloaded and every machine makes the same files: the weights come from ``torch.manual_seed`` and the
tokenizer from a BPE trained on the small corpus shipped beside this file. The model is deliberately small (2 layers,
about 14 M parameters): few layers keep the ahead-of-time build well under two minutes on a 2-core laptop (the
compiled graph is unrolled per layer), and the width makes a decode step cost real compute, so batching matters
as it does for a large model. The serving machinery (KV cache, in-flight batching) is the same as for a large one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

CORPUS = Path(__file__).with_name("corpus.txt")
SEED = 0
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2: Llama's convention
BOS_ID, EOS_ID = 1, 2


@dataclass(frozen=True)
class LlamaShape:
    """The decoder's dimensions (transformers ``LlamaConfig`` names)."""

    vocab_size: int = 512
    hidden_size: int = 768
    intermediate_size: int = 2048
    num_hidden_layers: int = 2
    num_attention_heads: int = 12
    num_key_value_heads: int = 4  # grouped-query attention, as in Llama 2 70B / Llama 3: a smaller KV cache
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5


def build_tokenizer(vocab_size: int = LlamaShape.vocab_size) -> Tokenizer:
    """A byte-free BPE tokenizer trained here on ``corpus.txt``, with Llama's ``▁`` word markers and ``<s>`` first.

    Metaspace pre-tokenization makes every token decode on its own (``▁the`` -> `` the``), which streaming needs:
    each response carries one token's text.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False, min_frequency=1
    )
    tokenizer.train_from_iterator(CORPUS.read_text().splitlines(), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS_ID)])
    return tokenizer


def build_llama(shape: LlamaShape | None = None, *, seed: int = SEED) -> tuple[LlamaForCausalLM, Tokenizer]:
    """transformers' LlamaForCausalLM with seeded random weights (float32), and its tokenizer."""
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    transformers.logging.set_verbosity_error()
    tokenizer = build_tokenizer()
    shape = shape or LlamaShape(vocab_size=tokenizer.get_vocab_size())
    config = LlamaConfig(
        **asdict(shape), bos_token_id=BOS_ID, eos_token_id=EOS_ID, tie_word_embeddings=False, hidden_act="silu"
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    # Random init gives std-0.02 weights whose logits are nearly flat; a larger spread makes greedy decoding
    # (and the int8 comparison) meaningful without training.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.08, generator=torch.Generator().manual_seed(seed + hash_name(name)))
    return model, tokenizer


def hash_name(name: str) -> int:
    """A stable small integer per parameter name (Python's hash() is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 100_003


def make_llama(dest: str | Path, *, seed: int = SEED) -> Path:
    """Write the lab model in Hugging Face's layout (``config.json``, ``model.safetensors``, ``tokenizer.json``)."""
    from transformers import PreTrainedTokenizerFast

    dest = Path(dest)
    model, tokenizer = build_llama(seed=seed)
    model.save_pretrained(dest)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(dest)
    (dest / "tritonlab.json").write_text(json.dumps({"source": f"local Llama (seed {seed})"}) + "\n")
    return dest
