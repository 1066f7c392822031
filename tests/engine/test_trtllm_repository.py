"""The generated inflight_batcher_llm repository: ModelConfig protobufs that pass `tritonlab validate`.

No TensorRT-LLM backend exists here, so nothing serves these models in the tests; they are checked by Triton's own
ModelConfig protobuf and by tritonlab's validator (which warns that the tensorrtllm backend is not embedded).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from trtllm_shapes import write_engine_dir

from tritonlab.engine.trtllm import RepositoryError, ServingOptions, write_model_repository
from tritonlab.model_config import validate


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    return write_engine_dir(tmp_path / "engine"), tokenizer


def test_generated_repository_passes_tritonlab_validate_with_only_the_backend_warning(tmp_path, dirs):
    repo = write_model_repository(tmp_path / "repo", *dirs)
    report = validate(repo, gpus=0)
    assert report.valid, [str(f) for f in report.errors]
    assert sorted(report.models) == ["ensemble", "postprocessing", "preprocessing", "tensorrt_llm"]
    assert [(f.severity, Path(f.path).parent.name) for f in report.findings] == [("warning", "tensorrt_llm")]
    assert "'tensorrtllm' is not in the embedded server" in report.findings[0].message


def test_the_cli_validates_it_too(tmp_path, dirs):
    repo = write_model_repository(tmp_path / "repo", *dirs)
    cli = Path(sys.executable).with_name("tritonlab")
    done = subprocess.run([str(cli), "validate", str(repo)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 model(s): valid (0 error(s), 1 warning(s))" in done.stdout


def test_tensorrt_llm_model_carries_the_backend_parameters(tmp_path, dirs):
    engine, tokenizer = dirs
    options = ServingOptions(triton_max_batch_size=32, max_queue_delay_microseconds=100, max_queue_size=256,
                             kv_cache_free_gpu_mem_fraction=0.8, enable_kv_cache_reuse=True,
                             max_tokens_in_paged_kv_cache=65536)  # fmt: skip
    repo = write_model_repository(tmp_path / "repo", engine, tokenizer, options)
    config = parse(repo / "tensorrt_llm" / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert config.backend == "tensorrtllm" and not config.platform
    assert config.max_batch_size == 32
    assert config.model_transaction_policy.decoupled is True
    assert params["gpt_model_type"] == "inflight_fused_batching"  # fill_template's batching_strategy
    assert params["gpt_model_path"] == str(engine.resolve())  # fill_template's engine_dir
    assert params["tokenizer_dir"] == str(tokenizer.resolve())
    assert params["kv_cache_free_gpu_mem_fraction"] == "0.8"
    assert params["enable_kv_cache_reuse"] == "true"
    assert params["max_tokens_in_paged_kv_cache"] == "65536"
    assert params["batch_scheduler_policy"] == "guaranteed_no_evict"
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 256
    assert list(config.dynamic_batching.preferred_batch_size) == [32]
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, mc.ModelInstanceGroup.KIND_CPU)]
    inputs = {t.name: t for t in config.input}
    assert inputs["input_ids"].allow_ragged_batch and list(inputs["input_ids"].dims) == [-1]
    assert inputs["input_lengths"].HasField("reshape") and not inputs["input_lengths"].optional
    assert inputs["streaming"].optional and inputs["streaming"].data_type == mc.TYPE_BOOL
    outputs = {t.name: t.data_type for t in config.output}
    assert outputs["output_ids"] == mc.TYPE_INT32 and outputs["generation_logits"] == mc.TYPE_FP32


def test_static_batching_and_no_streaming_are_options(tmp_path, dirs):
    options = ServingOptions(batching_strategy="V1", decoupled=False, logits_datatype="TYPE_FP16")
    repo = write_model_repository(tmp_path / "repo", *dirs, options)
    config = parse(repo / "tensorrt_llm" / "config.pbtxt")
    assert config.parameters["gpt_model_type"].string_value == "V1"
    assert config.model_transaction_policy.decoupled is False
    assert {t.name: t.data_type for t in config.output}["context_logits"] == mc.TYPE_FP16
    assert validate(repo, gpus=0).valid


def test_ensemble_chains_the_three_models(tmp_path, dirs):
    repo = write_model_repository(tmp_path / "repo", *dirs)
    config = parse(repo / "ensemble" / "config.pbtxt")
    assert config.platform == "ensemble"
    assert [s.model_name for s in config.ensemble_scheduling.step] == [
        "preprocessing",
        "tensorrt_llm",
        "postprocessing",
    ]
    pre, llm, post = config.ensemble_scheduling.step
    assert pre.input_map["QUERY"] == "text_input" and pre.input_map["REQUEST_OUTPUT_LEN"] == "max_tokens"
    assert llm.input_map["input_ids"] == pre.output_map["INPUT_ID"]
    assert llm.input_map["streaming"] == "stream"
    assert post.input_map["TOKENS_BATCH"] == llm.output_map["output_ids"]
    assert post.output_map["OUTPUT"] == "text_output"
    assert {t.name for t in config.input if not t.optional} == {"text_input", "max_tokens"}


def test_python_models_are_our_own_and_read_the_tokenizer_parameter(tmp_path, dirs):
    repo = write_model_repository(tmp_path / "repo", *dirs, ServingOptions(skip_special_tokens=False))
    for name in ("preprocessing", "postprocessing"):
        source = (repo / name / "1" / "model.py").read_text()
        tree = ast.parse(source)
        assert any(isinstance(n, ast.ClassDef) and n.name == "TritonPythonModel" for n in tree.body)
        assert 'params["tokenizer_dir"]' in source
        config = parse(repo / name / "config.pbtxt")
        assert config.backend == "python"
        assert config.parameters["tokenizer_dir"].string_value == str(dirs[1].resolve())
    post = parse(repo / "postprocessing" / "config.pbtxt")
    assert post.parameters["skip_special_tokens"].string_value == "false"


def test_options_are_checked_against_the_built_engine_on_a_directory_shaped_like_trtllm_build_output(tmp_path):
    engine = write_engine_dir(tmp_path / "engine", max_batch_size=16)
    with pytest.raises(RepositoryError) as info:
        write_model_repository(tmp_path / "repo", engine, tmp_path, ServingOptions(triton_max_batch_size=64))
    assert "above the engine's max_batch_size 16" in info.value.message
    assert "use 16 or less" in info.value.fix


@pytest.mark.parametrize(("options", "needle"), [
    (ServingOptions(kv_cache_free_gpu_mem_fraction=1.5), "kv_cache_free_gpu_mem_fraction 1.5"),
    (ServingOptions(triton_max_batch_size=0), "triton_max_batch_size must be 1 or more"),
    (ServingOptions(max_beam_width=4), "max_beam_width 4 is above the engine's 1"),
])  # fmt: skip
def test_bad_serving_options_are_refused(tmp_path, dirs, options, needle):
    with pytest.raises(RepositoryError, match=needle.replace("(", r"\(")):
        write_model_repository(tmp_path / "repo", *dirs, options)


def test_a_non_empty_directory_is_only_replaced_when_asked(tmp_path, dirs):
    repo = write_model_repository(tmp_path / "repo", *dirs)
    with pytest.raises(RepositoryError, match="is not empty"):
        write_model_repository(repo, *dirs)
    write_model_repository(repo, *dirs, ServingOptions(triton_max_batch_size=8), overwrite=True)
    assert parse(repo / "ensemble" / "config.pbtxt").max_batch_size == 8
