"""Engine-directory validation, on directories shaped like trtllm-build 1.2 output (written here: no engine was
built; the rank files are empty)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trtllm_shapes import write_engine_dir

from tritonlab.engine.trtllm import BuildLimits, BuildPlan, EngineDirError, Quantization, check_engine_dir, engine_info


def plan(engine: Path, **kw) -> BuildPlan:
    return BuildPlan(model_dir=Path("/m"), checkpoint_dir=Path("/c"), engine_dir=engine, **kw)


def test_a_matching_tp2_engine_passes_on_a_directory_shaped_like_trtllm_build_output(tmp_path):
    engine = write_engine_dir(tmp_path / "engine", tp=2)
    info = check_engine_dir(plan(engine, tp_size=2))
    assert (info.tp_size, info.pp_size, info.world_size) == (2, 1, 2)
    assert info.rank_files == ("rank0.engine", "rank1.engine")
    assert info.version == "1.2.1" and info.kv_cache_type == "PAGED"
    assert info.limits == {"max_batch_size": 64, "max_input_len": 2048, "max_seq_len": 2560, "max_num_tokens": 8192,
                           "max_beam_width": 1}  # fmt: skip


def test_quantized_engines_pass_on_a_directory_shaped_like_trtllm_build_output(tmp_path):
    cases = [
        (Quantization("fp8", kv_cache="fp8"), {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}),
        (Quantization("int4_awq"), {"quant_algo": "W4A16_AWQ"}),
        (Quantization("int8_wo", kv_cache="int8"), {"quant_algo": "W8A16", "kv_cache_quant_algo": "INT8"}),
        (Quantization("smoothquant"), {"quant_algo": "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN"}),
    ]
    for index, (quant, config) in enumerate(cases):
        engine = write_engine_dir(tmp_path / f"e{index}", dtype="bfloat16", **config)
        assert check_engine_dir(plan(engine, dtype="bfloat16", quant=quant)).quant_algo == config["quant_algo"]


def test_max_num_tokens_capped_by_trtllm_build_still_matches_on_a_directory_shaped_like_trtllm_build_output(tmp_path):
    # trtllm-build caps max_num_tokens at max_batch_size * max_seq_len
    engine = write_engine_dir(tmp_path / "e", max_batch_size=2, max_input_len=512, max_seq_len=1024,
                              max_num_tokens=2048)  # fmt: skip
    limits = BuildLimits(max_batch_size=2, max_input_len=512, max_seq_len=1024, max_num_tokens=8192)
    assert check_engine_dir(plan(engine, limits=limits)).limits["max_num_tokens"] == 2048


def test_a_missing_rank_names_the_file_and_the_fix_on_a_directory_shaped_like_trtllm_build_output(tmp_path):
    engine = write_engine_dir(tmp_path / "engine", tp=2, pp=2, ranks=3)
    with pytest.raises(EngineDirError) as info:
        check_engine_dir(plan(engine, tp_size=2, pp_size=2))
    assert str(engine / "rank3.engine") in info.value.message
    assert "rank0.engine, rank1.engine, rank2.engine, rank3.engine" in info.value.message
    assert "out of GPU memory" in info.value.fix


def test_leftover_ranks_from_an_older_build_are_reported_on_a_directory_shaped_like_trtllm_build_output(tmp_path):
    engine = write_engine_dir(tmp_path / "engine", ranks=2)
    with pytest.raises(EngineDirError) as info:
        engine_info(engine)
    assert "rank1.engine" in info.value.message and "1-rank engine" in info.value.message
    assert f"delete {engine}" in info.value.fix


@pytest.mark.parametrize(("plan_kw", "needle"), [
    ({"dtype": "bfloat16"}, "pretrained_config.dtype is 'float16', the plan says 'bfloat16'"),
    ({"tp_size": 2}, "pretrained_config.mapping.tp_size is 1, the plan says 2"),
    ({"quant": Quantization("fp8")}, "quant_algo is None, the plan says 'FP8'"),
    ({"quant": Quantization("none", kv_cache="fp8")}, "kv_cache_quant_algo is None, the plan says 'FP8'"),
    ({"quant": Quantization("smoothquant")}, "the plan says 'W8A8_SQ_*'"),
    ({"limits": BuildLimits(max_batch_size=128)}, "build_config.max_batch_size is 64, the plan says 128"),
    ({"limits": BuildLimits(max_seq_len=4096)}, "build_config.max_seq_len is 2560, the plan says 4096"),
    ({"kv_cache_type": "continuous"}, "build_config.kv_cache_type is 'paged', the plan says 'continuous'"),
])  # fmt: skip
def test_an_engine_from_another_plan_is_refused_on_a_directory_shaped_like_trtllm_build_output(
    tmp_path, plan_kw, needle
):
    engine = write_engine_dir(tmp_path / "engine")
    with pytest.raises(EngineDirError) as info:
        check_engine_dir(plan(engine, **plan_kw))
    assert needle in info.value.message
    assert str(engine / "config.json") in info.value.message
    assert "rebuild" in info.value.fix


def test_missing_or_broken_config_json_names_the_file(tmp_path):
    with pytest.raises(EngineDirError, match="is not a directory"):
        engine_info(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineDirError, match=r"config.json is missing \(trtllm-build writes it last"):
        engine_info(empty)
    (empty / "config.json").write_text("{not json")
    with pytest.raises(EngineDirError, match="is not valid JSON"):
        engine_info(empty)
    (empty / "config.json").write_text(json.dumps({"version": "0.7.1", "builder_config": {}}))
    with pytest.raises(EngineDirError) as info:
        engine_info(empty)
    assert "no 'pretrained_config' object" in info.value.message
    assert "no 'build_config' object" in info.value.message


def test_build_config_without_limits_is_reported(tmp_path):
    engine = write_engine_dir(tmp_path / "engine")
    data = json.loads((engine / "config.json").read_text())
    del data["build_config"]["max_seq_len"]
    (engine / "config.json").write_text(json.dumps(data))
    with pytest.raises(EngineDirError, match="build_config has no integer 'max_seq_len'"):
        engine_info(engine)
