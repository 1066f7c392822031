"""Phase 3, serve: a Triton model repository for a built engine, shaped like TensorRT-LLM's ``inflight_batcher_llm``.

    repo = prepare_repository(engine_dir, "work/repo", batching_strategy="inflight")
    with start_server(repo) as server:
        record = stream_generate(server.grpc_url, "once upon a time", max_tokens=32)

Models (configs written through Triton's ``ModelConfig`` protobuf):

- ``preprocessing``: text_input -> input_ids (the engine's tokenizer);
- ``llm``: decoupled python-backend model running the engine with in-flight or static batching, one response
  per token (``triton_models/llm.py``, which carries the runtime and the engine in its version folder);
- ``postprocessing``: each token id -> its text;
- ``ensemble``: text_input, max_tokens[, ignore_eos, stream, exclude_input_in_output] -> streamed text_output +
  output_ids. Call it through gRPC streaming or ``POST /v2/models/ensemble/generate_stream`` (a decoupled model
  cannot answer ``/infer``).

``stream`` and ``exclude_input_in_output`` are the two extra inputs genai-perf sends for ``--backend tensorrtllm``
(as TRT-LLM's ensemble has them). This ensemble always streams and never echoes the prompt, so it accepts them
when true and refuses false with a clear error (``preprocessing`` checks them).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from tritonlab.engine import runtime
from tritonlab.engine.build import engine_config
from tritonlab.errors import TritonLabError

ASSETS = Path(__file__).with_name("triton_models")
PREPROCESSING, LLM, POSTPROCESSING, ENSEMBLE = "preprocessing", "llm", "postprocessing", "ensemble"
Strategy = Literal["inflight", "static"]
# Inputs genai-perf sends for --backend tensorrtllm that this ensemble can only honour as true.
GENAI_PERF_FLAGS = ("stream", "exclude_input_in_output")


def _mc() -> Any:
    from tritonclient.grpc import model_config_pb2 as mc

    return mc


def _python_model(name: str) -> Any:
    mc = _mc()
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=0)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    return config


def preprocessing_config() -> Any:
    mc = _mc()
    config = _python_model(PREPROCESSING)
    config.input.add(name="text_input", data_type=mc.TYPE_STRING, dims=[1])
    for name in GENAI_PERF_FLAGS:  # accepted when true, refused when false (see the module docstring)
        config.input.add(name=name, data_type=mc.TYPE_BOOL, dims=[1], optional=True)
    config.output.add(name="input_ids", data_type=mc.TYPE_INT32, dims=[-1])
    return config


def llm_config(
    strategy: Strategy = "inflight",
    *,
    torch_threads: int = 1,
    batch_wait_ms: float = 5.0,
    step_log: bool = True,
    device: Literal["cpu", "cuda"] = "cpu",
) -> Any:
    """``device="cuda"`` (an engine built for a GPU): one KIND_GPU instance on GPU 0, which the engine and its KV
    cache live on; ``"cpu"``: one KIND_CPU instance."""
    mc = _mc()
    if strategy not in ("inflight", "static"):
        raise TritonLabError(f"batching_strategy={strategy!r}", fix="use 'inflight' or 'static'")
    config = _python_model(LLM)
    if device == "cuda":
        group = config.instance_group[0]
        group.kind = mc.ModelInstanceGroup.KIND_GPU
        group.gpus.append(0)
    config.input.add(name="input_ids", data_type=mc.TYPE_INT32, dims=[-1])
    config.input.add(name="max_tokens", data_type=mc.TYPE_INT32, dims=[1])
    config.input.add(name="ignore_eos", data_type=mc.TYPE_BOOL, dims=[1], optional=True)
    # [1, 1] per response: the batch axis postprocessing's dynamic batcher stacks tokens of one step along.
    config.output.add(name="output_ids", data_type=mc.TYPE_INT32, dims=[-1, -1])
    config.model_transaction_policy.decoupled = True  # many responses (tokens) per request
    params = {
        "batching_strategy": strategy,
        "torch_threads": str(torch_threads),
        "batch_wait_ms": str(batch_wait_ms),
        "step_log": "true" if step_log else "false",
    }
    for key, value in params.items():
        config.parameters[key].string_value = value
    return config


def postprocessing_config(max_batch_size: int = 64) -> Any:
    mc = _mc()
    config = _python_model(POSTPROCESSING)
    # Every running sequence sends a token per step, all within microseconds: the dynamic batcher hands them to
    # one execute() instead of one python-backend round trip per token (measured: the per-token hop, not the
    # model, otherwise limits tokens/s on 2 cores).
    config.max_batch_size = max_batch_size
    config.dynamic_batching.max_queue_delay_microseconds = 0
    config.input.add(name="output_ids", data_type=mc.TYPE_INT32, dims=[-1])
    config.output.add(name="text_output", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="output_ids", data_type=mc.TYPE_INT32, dims=[-1])
    return config


def ensemble_config() -> Any:
    mc = _mc()
    config = mc.ModelConfig(name=ENSEMBLE, platform="ensemble", max_batch_size=0)
    config.input.add(name="text_input", data_type=mc.TYPE_STRING, dims=[1])
    config.input.add(name="max_tokens", data_type=mc.TYPE_INT32, dims=[1])
    config.input.add(name="ignore_eos", data_type=mc.TYPE_BOOL, dims=[1], optional=True)
    for name in GENAI_PERF_FLAGS:
        config.input.add(name=name, data_type=mc.TYPE_BOOL, dims=[1], optional=True)
    config.output.add(name="text_output", data_type=mc.TYPE_STRING, dims=[-1, 1])
    config.output.add(name="output_ids", data_type=mc.TYPE_INT32, dims=[-1, -1])
    steps = config.ensemble_scheduling.step
    pre = steps.add(model_name=PREPROCESSING, model_version=-1)
    pre.input_map["text_input"] = "text_input"
    for name in GENAI_PERF_FLAGS:
        pre.input_map[name] = name
    pre.output_map["input_ids"] = "_input_ids"
    llm = steps.add(model_name=LLM, model_version=-1)
    llm.input_map["input_ids"] = "_input_ids"
    llm.input_map["max_tokens"] = "max_tokens"
    llm.input_map["ignore_eos"] = "ignore_eos"
    llm.output_map["output_ids"] = "_token"
    post = steps.add(model_name=POSTPROCESSING, model_version=-1)
    post.input_map["output_ids"] = "_token"
    post.output_map["text_output"] = "text_output"
    post.output_map["output_ids"] = "output_ids"
    return config


def _text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _model_dir(dest: Path, config: Any, model_file: str | None) -> Path:
    version = dest / config.name / "1"
    version.mkdir(parents=True, exist_ok=True)
    (dest / config.name / "config.pbtxt").write_text(_text(config))
    if model_file:
        shutil.copyfile(ASSETS / model_file, version / "model.py")
    return version


def prepare_repository(
    engine_dir: str | Path,
    dest: str | Path,
    *,
    batching_strategy: Strategy = "inflight",
    torch_threads: int = 1,
    batch_wait_ms: float = 5.0,
    step_log: bool = True,
) -> Path:
    """Write the four models into ``dest`` (replacing earlier copies); the engine is copied into ``llm/1/engine``.

    ``step_log=True`` makes ``llm`` write ``dest/llm/step_log.jsonl`` (see :func:`read_step_log`).
    """
    engine_dir, dest = Path(engine_dir), Path(dest)
    engine_config(engine_dir)  # a clear error for a directory that is not an engine
    if not (engine_dir / "tokenizer.json").exists():
        raise TritonLabError(
            f"{engine_dir} has no tokenizer.json", fix="convert from a model directory that has one (make_llama)"
        )
    for name in (PREPROCESSING, LLM, POSTPROCESSING, ENSEMBLE):
        shutil.rmtree(dest / name, ignore_errors=True)
    for config, model_file in (
        (preprocessing_config(), "preprocessing.py"),
        (postprocessing_config(), "postprocessing.py"),
    ):
        version = _model_dir(dest, config, model_file)
        shutil.copyfile(engine_dir / "tokenizer.json", version / "tokenizer.json")
    # The llm instance runs where the engine was built to run: KIND_GPU for a cuda engine.
    device = engine_config(engine_dir).get("device", {}).get("device_class", "cpu")
    llm = llm_config(
        batching_strategy, torch_threads=torch_threads, batch_wait_ms=batch_wait_ms, step_log=step_log, device=device
    )
    version = _model_dir(dest, llm, "llm.py")
    shutil.copyfile(runtime.__file__, version / "engine_runtime.py")
    shutil.copytree(engine_dir, version / "engine")
    _model_dir(dest, ensemble_config(), None)  # an ensemble needs an (empty) version folder
    return dest


def read_step_log(repository: str | Path) -> list[dict[str, Any]]:
    """The ``llm`` model's server-side events: admissions, decode steps (who was in each) and finishes."""
    import json

    path = Path(repository) / LLM / "step_log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
