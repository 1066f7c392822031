"""Lab 3 (PyTorch backend deployment): a real transformers text classifier, served by Triton with dynamic batching.

    clf = build_classifier()                        # small BERT, seeded weights, tokenizer made here (no download)
    export_torchscript(clf, "repo/classifier/1/model.pt")
    prepare_repository("repo", clf)                 # tokenizer -> classifier -> postprocess, ensemble text_classifier

The same model.pt serves two ways: in a Triton container through the real ``pytorch_libtorch`` platform
(``target="container"``), and in the embedded server through a python-backend model.py that loads it
(``target="embedded"``). Both configs come from one function, built with Triton's ModelConfig protobuf.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from tritonlab.bench import BenchTable
    from tritonlab.server import Server

ASSETS = Path(__file__).with_name("lab3_models")
SEQ_LEN = 32
LABELS = ("negative", "positive")
SEED = 0
ENSEMBLE, TOKENIZER, CLASSIFIER, POSTPROCESS = "text_classifier", "tokenizer", "classifier", "postprocess"
MAX_BATCH_SIZE = 32
NAIVE_LABEL = "naive transformers pipeline"  # the baseline's rows in the results file
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SAMPLE_TEXTS = [
    "a wonderful film with a brilliant cast",
    "the plot was boring and the ending was terrible",
    "i would not recommend this product",
    "great food and very friendly staff",
    "it was fine",
    "the worst movie i have ever seen",
    "an amazing experience from the first minute to the last",
    "slow, predictable and far too long",
]
# fp32 on the CPU reproduces the in-process logits to rounding; fp16 on a GPU to about 1e-2 on logits of ~1.
TOLERANCE = {"fp32": 1e-4, "fp16": 3e-2}


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    # torch.jit.trace still works in torch 2.13 and is what Triton's pytorch_libtorch backend loads; its
    # deprecation notice is about the future, not about this course's pinned versions.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+.* is deprecated", category=Warning)
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=Warning)
    warnings.filterwarnings("ignore", message=r"Converting a tensor to a Python boolean", category=Warning)


def build_tokenizer(seq_len: int = SEQ_LEN) -> Tokenizer:
    """A BERT-style WordPiece tokenizer made here from a fixed word list: no download, same ids everywhere."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = (ASSETS / "vocab_words.txt").read_text().split()
    pieces = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *pieces, *(f"##{p}" for p in pieces), *words]:
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return _fixed_length(tokenizer, seq_len)


def _fixed_length(tokenizer: Tokenizer, seq_len: int) -> Tokenizer:
    # Fixed-length sequences give every request the same shape, so Triton can batch any of them together.
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    tokenizer.enable_padding(length=seq_len, pad_id=pad_id, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=seq_len)
    return tokenizer


def encode(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The classifier's two inputs for ``texts``, as the tokenizer model sends them."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes the weights of ``module`` take (a transformers model or a loaded TorchScript file)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


@dataclass
class TextClassifier:
    """A sequence classifier with its tokenizer: the model the lab deploys, and the reference it is checked against."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    seq_len: int
    labels: tuple[str, ...]
    source: str

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self.tokenizer.backend_tokenizer

    @property
    def parameter_bytes(self) -> int:
        return parameter_bytes(self.model)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return encode(self.backend_tokenizer, texts)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """The in-process answer: transformers' model on this process's CPU, float32."""
        import torch

        encoded = self.encode(texts)
        with torch.no_grad():
            out = self.model(
                input_ids=torch.from_numpy(encoded["input_ids"]),
                attention_mask=torch.from_numpy(encoded["attention_mask"]),
            )
        return out.logits.float().numpy()

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        logits = self.logits(texts).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return [(self.labels[i], float(p[i])) for p, i in zip(probs, probs.argmax(axis=1), strict=True)]

    def save_pretrained(self, dest: str | Path) -> Path:
        """Model + tokenizer in Hugging Face's layout, for the plain transformers pipeline baseline."""
        dest = Path(dest)
        self.model.save_pretrained(dest)
        self.tokenizer.save_pretrained(dest)
        return dest


def build_classifier(hub_model: str | None = None, *, seq_len: int = SEQ_LEN, seed: int = SEED) -> TextClassifier:
    """The lab's classifier: a 2-layer BERT with seeded random weights and a local tokenizer.

    ``hub_model`` (e.g. ``"distilbert/distilbert-base-uncased-finetuned-sst-2-english"``) loads a real model and
    its tokenizer from the Hugging Face hub instead, for learners who are online.
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    _quiet_transformers()
    if hub_model:
        tokenizer = AutoTokenizer.from_pretrained(hub_model)
        model = AutoModelForSequenceClassification.from_pretrained(hub_model)
        _fixed_length(tokenizer.backend_tokenizer, seq_len)
        labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    else:
        backend = build_tokenizer(seq_len)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=seq_len,
        )
        labels = LABELS
        config = BertConfig(
            vocab_size=backend.get_vocab_size(),
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=512,
            max_position_embeddings=max(64, seq_len),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
        )
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    model = model.eval().requires_grad_(False)
    return TextClassifier(model, tokenizer, seq_len, labels, hub_model or f"local BERT (seed {seed})")


def _logits_only_class() -> type:
    import torch

    class LogitsOnly(torch.nn.Module):
        """forward(input_ids, attention_mask) -> logits: a plain-tensor signature TorchScript and Triton understand.

        Triton's pytorch_libtorch backend matches config inputs to these argument names. The padding mask is
        turned into the additive 4-D mask here, from tensors only: transformers' own mask code would record the
        tracing device (and dtype) as constants, and the traced model.pt would then fail on a GPU or in float16.
        """

        def __init__(self, model: PreTrainedModel) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            weight = self.model.get_input_embeddings().weight  # follows .to(device, dtype) of the loaded module
            keep = attention_mask[:, None, None, :] != 0
            # float16's lowest value is finite in both precisions: masked positions get exp(...) = 0, never NaN.
            bias = torch.zeros_like(keep, dtype=torch.float32).type_as(weight)
            bias = bias.masked_fill(~keep, torch.finfo(torch.float16).min)
            return self.model(input_ids=input_ids, attention_mask=bias).logits

    return LogitsOnly


def __getattr__(name: str) -> Any:
    # LogitsOnly subclasses torch.nn.Module: made on first use, so importing this module does not import torch.
    if name == "LogitsOnly":
        cls = globals()["LogitsOnly"] = _logits_only_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def example_inputs(clf: TextClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    """Two texts of different lengths, so the trace sees a real padding mask."""
    import torch

    encoded = clf.encode(SAMPLE_TEXTS[:2])
    return torch.from_numpy(encoded["input_ids"]), torch.from_numpy(encoded["attention_mask"])


def export_torchscript(clf: TextClassifier, path: str | Path) -> Path:
    """Trace ``clf`` to TorchScript and save it (the file both serving paths load)."""
    import torch

    _quiet_transformers()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.trace(__getattr__("LogitsOnly")(clf.model), example_inputs(clf)).save(str(path))
    return path


def torchscript_logits(
    path: str | Path, encoded: dict[str, np.ndarray], device: str = "cpu", precision: str = "fp32"
) -> np.ndarray:
    """Run a saved model.pt in this process: the reference Triton's answers are compared with."""
    import torch

    _quiet_transformers()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    module = torch.jit.load(str(path), map_location=device).eval().to(dtype)
    with torch.no_grad():
        out = module(
            torch.from_numpy(encoded["input_ids"]).to(device), torch.from_numpy(encoded["attention_mask"]).to(device)
        )
    return out.float().cpu().numpy()


def torchscript_argument_names(path: str | Path) -> list[str]:
    import torch

    _quiet_transformers()
    module = torch.jit.load(str(path), map_location="cpu")
    return [a.name for a in module.forward.schema.arguments][1:]  # [0] is self


# ---------------------------------------------------------------- configs and the repository


@dataclass
class Variant:
    """One classifier configuration to measure: dynamic batching on or off, its knobs, and the instance count.

    ``max_queue_delay_us=None`` means no dynamic_batching block at all (every request runs on its own).
    """

    name: str
    max_queue_delay_us: int | None = None
    preferred_batch_size: list[int] = field(default_factory=list)
    instances: int = 1

    @property
    def batching(self) -> bool:
        return self.max_queue_delay_us is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any]) -> Variant:
        """The variant a loaded config (Triton's JSON, as /config returns it) amounts to."""
        batching = config.get("dynamic_batching")
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        if batching is None:
            return cls(name, instances=instances)
        return cls(
            name,
            max_queue_delay_us=int(batching.get("max_queue_delay_microseconds", 0)),
            preferred_batch_size=[int(x) for x in batching.get("preferred_batch_size", [])],
            instances=instances,
        )

    def same_settings(self, other: Variant, max_batch_size: int = MAX_BATCH_SIZE) -> bool:
        return self._settings(max_batch_size) == other._settings(max_batch_size)

    def _settings(self, max_batch_size: int) -> tuple[Any, ...]:
        # Triton fills an empty preferred_batch_size with [max_batch_size] when it loads the model: the same thing.
        preferred = self.preferred_batch_size if self.preferred_batch_size != [max_batch_size] else []
        return self.max_queue_delay_us, preferred, self.instances


def classifier_config(
    target: Literal["embedded", "container"] = "embedded",
    *,
    variant: Variant | None = None,
    kind: Literal["cpu", "gpu"] = "cpu",
    num_labels: int = len(LABELS),
    seq_len: int = SEQ_LEN,
    max_batch_size: int = MAX_BATCH_SIZE,
) -> Any:
    """The classifier's ModelConfig: pytorch_libtorch in a container, python backend (loading model.pt) embedded."""
    from tritonclient.grpc import model_config_pb2 as mc

    variant = variant or Variant("no batching")
    config = mc.ModelConfig(name=CLASSIFIER, max_batch_size=max_batch_size)
    if target == "container":
        config.platform = "pytorch_libtorch"
    else:
        config.backend = "python"
    for name in ("input_ids", "attention_mask"):
        config.input.add(name=name, data_type=mc.TYPE_INT64, dims=[seq_len])
    config.output.add(name="logits", data_type=mc.TYPE_FP32, dims=[num_labels])
    group_kind = mc.ModelInstanceGroup.KIND_GPU if kind == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(kind=group_kind, count=variant.instances)
    if variant.batching:
        config.dynamic_batching.max_queue_delay_microseconds = variant.max_queue_delay_us or 0
        config.dynamic_batching.preferred_batch_size.extend(variant.preferred_batch_size)
    return config


def config_text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def config_json(config: Any) -> dict[str, Any]:
    """The config as the JSON Triton's load API accepts (``POST /v2/repository/models/M/load``)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def _tokenizer_config(seq_len: int) -> Any:
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=TOKENIZER, backend="python", max_batch_size=MAX_BATCH_SIZE)
    config.input.add(name="TEXT", data_type=mc.TYPE_STRING, dims=[1])
    for name in ("input_ids", "attention_mask"):
        config.output.add(name=name, data_type=mc.TYPE_INT64, dims=[seq_len])
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.dynamic_batching.max_queue_delay_microseconds = 0
    return config


def _postprocess_config(labels: Sequence[str]) -> Any:
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=POSTPROCESS, backend="python", max_batch_size=MAX_BATCH_SIZE)
    config.input.add(name="logits", data_type=mc.TYPE_FP32, dims=[len(labels)])
    config.output.add(name="LABEL", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="SCORE", data_type=mc.TYPE_FP32, dims=[1])
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.parameters["labels"].string_value = ",".join(labels)
    return config


def _ensemble_config(labels: Sequence[str]) -> Any:
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=ENSEMBLE, platform="ensemble", max_batch_size=MAX_BATCH_SIZE)
    config.input.add(name="TEXT", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="LOGITS", data_type=mc.TYPE_FP32, dims=[len(labels)])
    config.output.add(name="LABEL", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="SCORE", data_type=mc.TYPE_FP32, dims=[1])
    steps = config.ensemble_scheduling.step
    tok = steps.add(model_name=TOKENIZER, model_version=-1)
    tok.input_map["TEXT"] = "TEXT"
    tok.output_map["input_ids"] = "input_ids"
    tok.output_map["attention_mask"] = "attention_mask"
    clf = steps.add(model_name=CLASSIFIER, model_version=-1)
    clf.input_map["input_ids"] = "input_ids"
    clf.input_map["attention_mask"] = "attention_mask"
    clf.output_map["logits"] = "LOGITS"
    post = steps.add(model_name=POSTPROCESS, model_version=-1)
    post.input_map["logits"] = "LOGITS"
    post.output_map["LABEL"] = "LABEL"
    post.output_map["SCORE"] = "SCORE"
    return config


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def prepare_repository(
    dest: str | Path,
    clf: TextClassifier,
    target: Literal["embedded", "container"] = "embedded",
    *,
    kind: Literal["cpu", "gpu"] = "cpu",
    variant: Variant | None = None,
) -> Path:
    """Lay out tokenizer -> classifier -> postprocess and the ensemble ``text_classifier``.

    classifier/1/model.pt is yours to export (``export_torchscript``, or the lab's exercise).
    """
    dest = Path(dest)
    _write(dest / TOKENIZER / "config.pbtxt", config_text(_tokenizer_config(clf.seq_len)))
    (dest / TOKENIZER / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ASSETS / "tokenizer.py", dest / TOKENIZER / "1" / "model.py")
    clf.backend_tokenizer.save(str(dest / TOKENIZER / "1" / "tokenizer.json"))
    config = classifier_config(target, variant=variant, kind=kind, num_labels=len(clf.labels), seq_len=clf.seq_len)
    _write(dest / CLASSIFIER / "config.pbtxt", config_text(config))
    (dest / CLASSIFIER / "1").mkdir(parents=True, exist_ok=True)
    embedded_py = dest / CLASSIFIER / "1" / "model.py"
    if target == "embedded":
        shutil.copyfile(ASSETS / "classifier.py", embedded_py)
    elif embedded_py.exists():
        embedded_py.unlink()  # pytorch_libtorch serves model.pt itself
    _write(dest / POSTPROCESS / "config.pbtxt", config_text(_postprocess_config(clf.labels)))
    (dest / POSTPROCESS / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ASSETS / "postprocess.py", dest / POSTPROCESS / "1" / "model.py")
    _write(dest / ENSEMBLE / "config.pbtxt", config_text(_ensemble_config(clf.labels)))
    (dest / ENSEMBLE / "1").mkdir(parents=True, exist_ok=True)  # an ensemble needs a version folder, empty
    return dest


# ---------------------------------------------------------------- measuring


def load_variant(server: Server, variant: Variant, *, kind: Literal["cpu", "gpu"] = "cpu", **config: Any) -> None:
    """(Re)load classifier with ``variant``'s settings through the repository API (explicit mode)."""
    config_message = classifier_config("embedded", variant=variant, kind=kind, **config)
    server.load_model(CLASSIFIER, config=config_json(config_message))


def loaded_variant(server: Server, name: str = "loaded") -> Variant:
    return Variant.from_config(name, server.model_config(CLASSIFIER))


def benchmark_inputs(clf: TextClassifier, texts: Iterable[str] = SAMPLE_TEXTS) -> dict[str, np.ndarray]:
    """One request for classifier: a tokenized sample text (batch dimension left to the load generator)."""
    encoded = clf.encode(list(texts)[:1])
    return {name: array[0] for name, array in encoded.items()}


def sweep(
    server: Server,
    clf: TextClassifier,
    variants: Sequence[Variant],
    *,
    concurrency: Sequence[int] | str = (1, 4, 16),
    duration_s: float = 2.0,
    warmup_s: float = 0.5,
    save_to: str | Path | None = None,
    tool: str = "builtin",
    kind: Literal["cpu", "gpu"] = "cpu",
    progress: bool = True,
) -> BenchTable:
    """Measure classifier under each variant over a concurrency range; rows carry the variant (and server stats)."""
    from tritonlab.bench import BenchTable, run_bench

    table = BenchTable([])
    inputs = benchmark_inputs(clf)
    for variant in variants:
        load_variant(server, variant, kind=kind)
        rows = run_bench(
            server,
            CLASSIFIER,
            tool=tool,
            concurrency=list(concurrency) if not isinstance(concurrency, str) else concurrency,
            duration_s=duration_s,
            warmup_s=warmup_s,
            inputs=inputs,
            label=variant.name,
            config=variant.as_dict(),
            progress=progress,
            save_to=save_to,
        )
        table.extend(rows)
    return table


def memory_report(server: Server, model: str = CLASSIFIER) -> dict[str, Any]:
    """Memory of ``model``'s instances: each python-backend stub's RSS, and on a GPU the device's used bytes."""
    import psutil
    from prometheus_client.parser import text_string_to_metric_families

    instances: dict[str, int] = {}
    children: list[psutil.Process] = []
    if server.pid is not None:
        with contextlib.suppress(psutil.Error):  # a server that has died has no instances to report
            children = psutil.Process(server.pid).children(recursive=True)
        for child in children:
            try:
                cmdline = child.cmdline()
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            instance = next((arg for arg in cmdline if arg.startswith(f"{model}_")), None)
            if cmdline and cmdline[0].endswith("triton_python_backend_stub") and instance:
                instances[instance] = rss
    gpu = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        if family.name == "nv_gpu_memory_used_bytes":
            gpu = {s.labels.get("gpu_uuid", "gpu"): int(s.value) for s in family.samples}
    return {"model": model, "instance_rss_bytes": instances, "gpu_memory_used_bytes": gpu}
