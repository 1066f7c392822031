"""Lab 5, track A: the real TensorRT-LLM engine workflow, pinned to TensorRT-LLM 1.2.x.

1.2.x is the last line with the engine workflow (``convert_checkpoint.py`` / ``quantize.py`` -> ``trtllm-build`` ->
Triton's ``tensorrtllm`` backend); 1.3+ keeps only the PyTorch backend (``tensorrt_llm.LLM``, ``trtllm-serve``).
The version and the container (``nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3``, TRT-LLM 1.2.1) come from
``env/versions.toml`` ``[trtllm]``.

* :class:`BuildPlan` -> ``convert_argv()`` / ``build_argv()``: the exact command lines (``plan.py``);
* :func:`validate_command`: checks a learner's command line against the real flags (``commands.py``);
* :func:`run_plan`: runs a plan with a local TensorRT-LLM or in the TRT-LLM container, then
  :func:`check_engine_dir` validates what trtllm-build wrote (``runner.py``, ``engine_dir.py``);
* :func:`write_model_repository`: the inflight_batcher_llm repository through ``ModelConfig`` protobufs
  (``repository.py``); :class:`TrtllmServer` / :func:`mpi_command`: serving it, MPI for tp x pp > 1 (``serve.py``).

TensorRT-LLM cannot be installed on the course's CPU machines, so nothing here has run trtllm-build; the flags and
configs were read from the upstream sources below (the code search index's stored versions; it does not name
release tags, so the commits are the evidence — the 1.x-only spellings and removals in them, e.g. "TensorRT LLM",
``tensorrt_llm.lora_helper``, no auto-parallel flags, place them in the 1.1/1.2 line, but a 1.2.1-tag diff was not
possible here):

* NVIDIA/TensorRT-LLM ``tensorrt_llm/commands/build.py`` @ 65f1d1536e18aea3380e6e270e00895a709333eb (trtllm-build
  argparse: no --max_output_len, --max_seq_len alias --max_decoder_seq_len, --kv_cache_type, --paged_kv_cache
  deprecated and taking a value; refuses --multiple_profiles with --opt_num_tokens, context logits with drafts);
* ``tensorrt_llm/plugin/plugin.py`` @ c20322ffd3dc0740ca530c9fad989b22e64f6e06 (cli_plugin_args and their choices);
* ``examples/models/core/llama/convert_checkpoint.py`` @ fd96a08bdc489f41f139b295935b10ed43652fa1 (--tp_size,
  --pp_size, --dtype, --use_weight_only/--weight_only_precision, --smoothquant/--per_channel/--per_token,
  --use_fp8, --int8_kv_cache/--fp8_kv_cache);
* ``examples/quantization/quantize.py`` @ c8c6df08bd0ead54cd47f7973e1e425c28a174cd (--qformat choices,
  --kv_cache_dtype, --tp_size/--pp_size);
* ``triton_backend/all_models/inflight_batcher_llm/{tensorrt_llm,ensemble}/config.pbtxt`` @
  2a9abd9536aa62ad3e4b9314be9286b1b1be523b, ``preprocessing/config.pbtxt`` @ 808059da341493bbf8deb9380aef745e4f546909,
  ``postprocessing/config.pbtxt`` @ 89fd9b74ab7ae753b4c6b3db25a400dca7ea54a0, ``tensorrt_llm_bls/config.pbtxt`` @
  bff88ea886779f832686acb3f165e2b919c95b77; ``triton_backend/scripts/launch_triton_server.py`` @
  0b06796b2c7895930fecff48a1e205ab14a19c51;
* triton-inference-server/tensorrtllm_backend branch r26.07 @ 3bc115373ce1fde1d94891964b492449402e3a68:
  ``dockerfile/Dockerfile.triton.trt_llm_backend`` (TENSORRTLLM_REPO_TAG=release/1.2.1; /app/scripts,
  /app/all_models, /app/examples in the image) and ``docs/model_config.md`` (parameter meanings).
"""

from tritonlab.engine.trtllm.commands import CommandReport, validate_argv, validate_command
from tritonlab.engine.trtllm.engine_dir import EngineDirError, EngineInfo, check_engine_dir, engine_info
from tritonlab.engine.trtllm.plan import BuildLimits, BuildPlan, PlanError, Plugins, Quantization
from tritonlab.engine.trtllm.repository import RepositoryError, ServingOptions, write_model_repository
from tritonlab.engine.trtllm.runner import BuildFailed, TrtllmUnavailable, run_plan
from tritonlab.engine.trtllm.serve import TrtllmServer, launch_script_command, mpi_command, start_trtllm_server

__all__ = [
    "BuildFailed",
    "BuildLimits",
    "BuildPlan",
    "CommandReport",
    "EngineDirError",
    "EngineInfo",
    "PlanError",
    "Plugins",
    "Quantization",
    "RepositoryError",
    "ServingOptions",
    "TrtllmServer",
    "TrtllmUnavailable",
    "check_engine_dir",
    "engine_info",
    "launch_script_command",
    "mpi_command",
    "run_plan",
    "start_trtllm_server",
    "validate_argv",
    "validate_command",
    "write_model_repository",
]
