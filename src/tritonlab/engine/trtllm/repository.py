"""Write the ``inflight_batcher_llm`` model repository for a TensorRT-LLM engine, with our own code.

Four models, each config built as a ``ModelConfig`` protobuf and written in text format:

* ``preprocessing`` (python backend): text -> token ids with the model's tokenizer;
* ``tensorrt_llm`` (backend ``tensorrtllm``): the engine, with in-flight batching and streaming (decoupled);
* ``postprocessing`` (python backend): token ids -> text;
* ``ensemble``: text_input / max_tokens / stream ... -> text_output through the three.

The tensorrt_llm model's tensor names and types and its parameter keys are the tensorrtllm backend's interface;
they were checked against ``triton_backend/all_models/inflight_batcher_llm/*/config.pbtxt`` in NVIDIA/TensorRT-LLM
(tensorrt_llm and ensemble @ 2a9abd9536aa62ad3e4b9314be9286b1b1be523b, preprocessing @
808059da341493bbf8deb9380aef745e4f546909, postprocessing @ 89fd9b74ab7ae753b4c6b3db25a400dca7ea54a0) and the
parameter table in triton-inference-server/tensorrtllm_backend docs/model_config.md @ r26.07
(3bc115373ce1fde1d94891964b492449402e3a68, whose Dockerfile pins TensorRT-LLM release/1.2.1). Upstream fills
templates (``fill_template.py`` keys such as ``batching_strategy``, ``engine_dir``, ``decoupled_mode``); the keys
land in config.pbtxt as ``gpt_model_type``, ``gpt_model_path`` and ``model_transaction_policy.decoupled``. The
tensorrt_llm model's instance group is KIND_CPU upstream too: the backend places the engine on GPUs itself.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from google.protobuf import text_format

from tritonlab.engine.trtllm.engine_dir import EngineInfo, engine_info
from tritonlab.errors import TritonLabError

BatchingStrategy = Literal["inflight_fused_batching", "V1"]
SchedulerPolicy = Literal["guaranteed_no_evict", "max_utilization"]
MODELS = ("preprocessing", "tensorrt_llm", "postprocessing", "ensemble")

# (name, data type, dims, optional, reshape to a scalar, ragged batch)
Tensor = tuple[str, str, tuple[int, ...], bool, bool, bool]


def _scalar(name: str, dtype: str) -> Tensor:
    return (name, dtype, (1,), True, True, False)


TRTLLM_INPUTS: tuple[Tensor, ...] = (
    ("input_ids", "TYPE_INT32", (-1,), True, False, True),
    ("input_lengths", "TYPE_INT32", (1,), False, True, False),
    ("request_output_len", "TYPE_INT32", (1,), False, True, False),
    _scalar("end_id", "TYPE_INT32"),
    _scalar("pad_id", "TYPE_INT32"),
    ("stop_words_list", "TYPE_INT32", (2, -1), True, False, True),
    ("bad_words_list", "TYPE_INT32", (2, -1), True, False, True),
    ("embedding_bias", "TYPE_FP32", (-1,), True, False, True),
    _scalar("beam_width", "TYPE_INT32"),
    _scalar("num_return_sequences", "TYPE_INT32"),
    _scalar("temperature", "TYPE_FP32"),
    _scalar("runtime_top_k", "TYPE_INT32"),
    _scalar("runtime_top_p", "TYPE_FP32"),
    _scalar("len_penalty", "TYPE_FP32"),
    _scalar("repetition_penalty", "TYPE_FP32"),
    _scalar("min_tokens", "TYPE_INT32"),
    _scalar("presence_penalty", "TYPE_FP32"),
    _scalar("frequency_penalty", "TYPE_FP32"),
    _scalar("seed", "TYPE_UINT64"),
    _scalar("return_log_probs", "TYPE_BOOL"),
    _scalar("return_context_logits", "TYPE_BOOL"),
    _scalar("return_generation_logits", "TYPE_BOOL"),
    _scalar("exclude_input_in_output", "TYPE_BOOL"),
    _scalar("stop", "TYPE_BOOL"),
    _scalar("streaming", "TYPE_BOOL"),
)
# Every output the backend may produce (LOGITS: the logits data type option).
TRTLLM_OUTPUTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("output_ids", "TYPE_INT32", (-1, -1)),
    ("sequence_length", "TYPE_INT32", (-1,)),
    ("cum_log_probs", "TYPE_FP32", (-1,)),
    ("output_log_probs", "TYPE_FP32", (-1, -1)),
    ("context_logits", "LOGITS", (-1, -1)),
    ("generation_logits", "LOGITS", (-1, -1, -1)),
    ("batch_index", "TYPE_INT32", (1,)),
    ("sequence_index", "TYPE_INT32", (1,)),
    ("context_phase_params", "TYPE_UINT8", (-1,)),
    ("kv_cache_alloc_new_blocks", "TYPE_INT32", (1,)),
    ("kv_cache_reused_blocks", "TYPE_INT32", (1,)),
    ("kv_cache_alloc_total_blocks", "TYPE_INT32", (1,)),
    ("arrival_time_ns", "TYPE_INT64", (1,)),
    ("first_scheduled_time_ns", "TYPE_INT64", (1,)),
    ("first_token_time_ns", "TYPE_INT64", (1,)),
    ("last_token_time_ns", "TYPE_INT64", (1,)),
    ("acceptance_rate", "TYPE_FP32", (1,)),
    ("total_accepted_draft_tokens", "TYPE_INT32", (1,)),
    ("total_draft_tokens", "TYPE_INT32", (1,)),
    ("num_input_tokens", "TYPE_INT32", (1,)),
    ("num_output_tokens", "TYPE_INT32", (1,)),
)
PRE_INPUTS: tuple[Tensor, ...] = (
    ("QUERY", "TYPE_STRING", (1,), False, False, False),
    ("REQUEST_OUTPUT_LEN", "TYPE_INT32", (1,), False, False, False),
    ("END_ID", "TYPE_INT32", (1,), True, False, False),
    ("PAD_ID", "TYPE_INT32", (1,), True, False, False),
)
PRE_OUTPUTS = (
    ("INPUT_ID", "TYPE_INT32", (-1,)),
    ("REQUEST_INPUT_LEN", "TYPE_INT32", (1,)),
    ("REQUEST_OUTPUT_LEN", "TYPE_INT32", (1,)),
    ("OUT_END_ID", "TYPE_INT32", (1,)),
    ("OUT_PAD_ID", "TYPE_INT32", (1,)),
)
POST_INPUTS: tuple[Tensor, ...] = (
    ("TOKENS_BATCH", "TYPE_INT32", (-1, -1), False, False, False),
    ("SEQUENCE_LENGTH", "TYPE_INT32", (-1,), False, False, False),
)
POST_OUTPUTS = (("OUTPUT", "TYPE_STRING", (-1,)),)
# ensemble input -> (its type, the tensorrt_llm input it feeds directly, or None when preprocessing takes it)
ENSEMBLE_INPUTS: dict[str, tuple[str, bool, str | None]] = {
    "text_input": ("TYPE_STRING", False, None),
    "max_tokens": ("TYPE_INT32", False, None),
    "end_id": ("TYPE_INT32", True, None),
    "pad_id": ("TYPE_INT32", True, None),
    "stream": ("TYPE_BOOL", True, "streaming"),
    "temperature": ("TYPE_FP32", True, "temperature"),
    "top_k": ("TYPE_INT32", True, "runtime_top_k"),
    "top_p": ("TYPE_FP32", True, "runtime_top_p"),
    "repetition_penalty": ("TYPE_FP32", True, "repetition_penalty"),
    "min_tokens": ("TYPE_INT32", True, "min_tokens"),
    "seed": ("TYPE_UINT64", True, "seed"),
    "exclude_input_in_output": ("TYPE_BOOL", True, "exclude_input_in_output"),
}


class RepositoryError(TritonLabError):
    """The serving options are inconsistent, or with the engine."""


@dataclass(frozen=True)
class ServingOptions:
    """What fill_template.py would fill: batching, streaming, KV cache and tokenizer settings."""

    triton_max_batch_size: int = 64
    decoupled: bool = True  # streaming: responses per token (gRPC stream / generate_stream)
    batching_strategy: BatchingStrategy = "inflight_fused_batching"
    max_queue_delay_microseconds: int = 0
    max_queue_size: int = 0  # 0: no limit
    kv_cache_free_gpu_mem_fraction: float = 0.9
    max_tokens_in_paged_kv_cache: int | None = None
    enable_kv_cache_reuse: bool = False
    enable_chunked_context: bool = False
    batch_scheduler_policy: SchedulerPolicy = "guaranteed_no_evict"
    exclude_input_in_output: bool = True
    max_beam_width: int = 1
    cuda_graph_mode: bool = False
    logits_datatype: Literal["TYPE_FP32", "TYPE_FP16", "TYPE_BF16"] = "TYPE_FP32"
    preprocessing_instance_count: int = 1
    postprocessing_instance_count: int = 1
    add_special_tokens: bool = True
    skip_special_tokens: bool = True

    def problems(self, engine: EngineInfo | None = None) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.triton_max_batch_size < 1:
            out.append(("triton_max_batch_size must be 1 or more", "use e.g. the engine's max_batch_size"))
        if not 0.0 < self.kv_cache_free_gpu_mem_fraction <= 1.0:
            out.append(
                (
                    f"kv_cache_free_gpu_mem_fraction {self.kv_cache_free_gpu_mem_fraction} is not in (0, 1]",
                    "0.9 gives the KV cache 90% of the GPU memory left after the weights",
                )
            )
        if self.max_queue_delay_microseconds < 0 or self.max_queue_size < 0:
            out.append(("max_queue_delay_microseconds and max_queue_size must be 0 or more", "use 0 for none"))
        if self.preprocessing_instance_count < 1 or self.postprocessing_instance_count < 1:
            out.append(("instance counts must be 1 or more", "use 1 (tokenizing is cheap) or more"))
        if engine is not None:
            built = engine.limits.get("max_batch_size")
            if built is not None and self.triton_max_batch_size > built:
                out.append(
                    (
                        f"triton_max_batch_size {self.triton_max_batch_size} is above the engine's "
                        f"max_batch_size {built}",
                        f"use {built} or less, or rebuild the engine",
                    )
                )
            beams = engine.limits.get("max_beam_width", 1)
            if self.max_beam_width > beams:
                out.append(
                    (
                        f"max_beam_width {self.max_beam_width} is above the engine's {beams}",
                        f"use {beams} or less, or rebuild with --max_beam_width",
                    )
                )
        return out


def _mc() -> Any:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def _add_tensors(config: Any, kind: str, tensors: tuple[Tensor, ...], logits: str = "TYPE_FP32") -> None:
    mc = _mc()
    for name, dtype, dims, optional, scalar, ragged in tensors:
        tensor = getattr(config, kind).add(
            name=name, data_type=mc.DataType.Value(logits if dtype == "LOGITS" else dtype)
        )
        tensor.dims.extend(dims)
        if optional:
            tensor.optional = True
        if scalar:
            tensor.reshape.SetInParent()  # reshape: { shape: [ ] }
        if ragged:
            tensor.allow_ragged_batch = True


def _outputs(config: Any, outputs: tuple[tuple[str, str, tuple[int, ...]], ...], logits: str = "TYPE_FP32") -> None:
    _add_tensors(config, "output", tuple((n, t, d, False, False, False) for n, t, d in outputs), logits)


def _params(config: Any, values: dict[str, object]) -> None:
    for key, value in values.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        config.parameters[key].string_value = text


def _cpu_instances(config: Any, count: int) -> None:
    config.instance_group.add(count=count, kind=_mc().ModelInstanceGroup.KIND_CPU)


def preprocessing_config(options: ServingOptions, tokenizer_dir: Path) -> Any:
    config = _mc().ModelConfig(name="preprocessing", backend="python", max_batch_size=options.triton_max_batch_size)
    config.dynamic_batching.SetInParent()
    _add_tensors(config, "input", PRE_INPUTS)
    _outputs(config, PRE_OUTPUTS)
    _params(config, {"tokenizer_dir": tokenizer_dir, "add_special_tokens": options.add_special_tokens})
    _cpu_instances(config, options.preprocessing_instance_count)
    return config


def postprocessing_config(options: ServingOptions, tokenizer_dir: Path) -> Any:
    config = _mc().ModelConfig(name="postprocessing", backend="python", max_batch_size=options.triton_max_batch_size)
    config.dynamic_batching.SetInParent()
    _add_tensors(config, "input", POST_INPUTS)
    _outputs(config, POST_OUTPUTS)
    _params(config, {"tokenizer_dir": tokenizer_dir, "skip_special_tokens": options.skip_special_tokens})
    _cpu_instances(config, options.postprocessing_instance_count)
    return config


def tensorrt_llm_config(options: ServingOptions, engine_dir: Path, tokenizer_dir: Path) -> Any:
    o = options
    config = _mc().ModelConfig(name="tensorrt_llm", backend="tensorrtllm", max_batch_size=o.triton_max_batch_size)
    config.model_transaction_policy.decoupled = o.decoupled
    batching = config.dynamic_batching
    batching.preferred_batch_size.append(o.triton_max_batch_size)
    batching.max_queue_delay_microseconds = o.max_queue_delay_microseconds
    batching.default_queue_policy.max_queue_size = o.max_queue_size
    _add_tensors(config, "input", TRTLLM_INPUTS)
    _outputs(config, TRTLLM_OUTPUTS, o.logits_datatype)
    _cpu_instances(config, 1)  # upstream too: the backend itself places the engine's ranks on the GPUs
    params: dict[str, object] = {
        "gpt_model_type": o.batching_strategy,  # fill_template key: batching_strategy
        "gpt_model_path": engine_dir,  # fill_template key: engine_dir
        "tokenizer_dir": tokenizer_dir,
        "max_beam_width": o.max_beam_width,
        "batch_scheduler_policy": o.batch_scheduler_policy,
        "kv_cache_free_gpu_mem_fraction": o.kv_cache_free_gpu_mem_fraction,
        "enable_kv_cache_reuse": o.enable_kv_cache_reuse,
        "enable_chunked_context": o.enable_chunked_context,
        "exclude_input_in_output": o.exclude_input_in_output,
        "cuda_graph_mode": o.cuda_graph_mode,
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
    }
    if o.max_tokens_in_paged_kv_cache is not None:
        params["max_tokens_in_paged_kv_cache"] = o.max_tokens_in_paged_kv_cache
    _params(config, params)
    return config


def ensemble_config(options: ServingOptions) -> Any:
    mc = _mc()
    config = mc.ModelConfig(name="ensemble", platform="ensemble", max_batch_size=options.triton_max_batch_size)
    _add_tensors(config, "input", tuple((n, t, (1,), opt, False, False) for n, (t, opt, _) in ENSEMBLE_INPUTS.items()))
    _outputs(config, (("text_output", "TYPE_STRING", (-1,)),))
    steps = config.ensemble_scheduling.step
    pre = steps.add(model_name="preprocessing", model_version=-1)
    pre.input_map.update(
        {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "END_ID": "end_id", "PAD_ID": "pad_id"}
    )
    pre.output_map.update(
        {
            "INPUT_ID": "_INPUT_ID",
            "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN",
            "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN",
            "OUT_END_ID": "_END_ID",
            "OUT_PAD_ID": "_PAD_ID",
        }
    )
    llm = steps.add(model_name="tensorrt_llm", model_version=-1)
    llm.input_map.update(
        {
            "input_ids": "_INPUT_ID",
            "input_lengths": "_REQUEST_INPUT_LEN",
            "request_output_len": "_REQUEST_OUTPUT_LEN",
            "end_id": "_END_ID",
            "pad_id": "_PAD_ID",
        }
    )
    llm.input_map.update({target: name for name, (_, _, target) in ENSEMBLE_INPUTS.items() if target})
    llm.output_map.update({"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH"})
    post = steps.add(model_name="postprocessing", model_version=-1)
    post.input_map.update({"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH"})
    post.output_map.update({"OUTPUT": "text_output"})
    return config


def render(config: Any) -> str:
    return text_format.MessageToString(config)


def write_model_repository(
    path: str | Path,
    engine_dir: str | Path,
    tokenizer_dir: str | Path,
    options: ServingOptions | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the four models into ``path`` (a new or empty directory, or any with overwrite=True).

    ``engine_dir`` and ``tokenizer_dir`` are written as absolute paths: the server (or its container) must see
    them at the same place. When the engine is already built its config.json is read, and the options are checked
    against it (batch size, beams).
    """
    options = options or ServingOptions()
    repo, engine_dir, tokenizer_dir = (Path(p).expanduser().resolve() for p in (path, engine_dir, tokenizer_dir))
    engine = engine_info(engine_dir) if (engine_dir / "config.json").is_file() else None
    problems = options.problems(engine)
    if problems:
        raise RepositoryError(
            "the serving options do not work:\n" + "\n".join(f"  - {p}" for p, _ in problems),
            fix="; ".join(f for _, f in problems),
        )
    if repo.exists() and any(repo.iterdir()) and not overwrite:
        raise RepositoryError(f"{repo} is not empty", fix="choose a new directory, or pass overwrite=True")
    configs = {
        "preprocessing": preprocessing_config(options, tokenizer_dir),
        "tensorrt_llm": tensorrt_llm_config(options, engine_dir, tokenizer_dir),
        "postprocessing": postprocessing_config(options, tokenizer_dir),
        "ensemble": ensemble_config(options),
    }
    for name, config in configs.items():
        version = repo / name / "1"
        if overwrite and (repo / name).exists():
            shutil.rmtree(repo / name)
        version.mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(render(config))
        if config.backend == "python":
            source = resources.files("tritonlab.engine.trtllm.triton_models") / f"{name}.py"
            (version / "model.py").write_text(source.read_text())
    return repo
