"""InputSet: samples from a real model's configuration or given arrays, batches, perf_analyzer's JSON format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tritonlab.bench import InputSet
from tritonlab.errors import TritonLabError

CONFIG = {
    "name": "encoder",
    "max_batch_size": 4,
    "input": [
        {"name": "input_ids", "data_type": "TYPE_INT64", "dims": ["-1"]},
        {"name": "text", "data_type": "TYPE_STRING", "dims": [2]},
        {"name": "scale", "data_type": "TYPE_FP16", "dims": [3]},
        {"name": "mask", "data_type": "TYPE_BOOL", "dims": [3], "optional": True},
    ],
    "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [2]}],
}


def test_from_a_running_model(server):
    inputs = InputSet.from_model(server, "add_sub")
    assert inputs.datatypes == {"INPUT0": "FP32", "INPUT1": "FP32"} and inputs.batching
    assert inputs.outputs == ("OUTPUT0", "OUTPUT1") and inputs.max_batch_size == 8
    assert inputs.samples["INPUT0"].shape == (4,) and inputs.samples["INPUT0"].dtype == np.float32
    assert inputs.samples["INPUT0"].std() > 0  # random normal, not zeros
    batch = inputs.batch(3)
    assert batch["INPUT1"].shape == (3, 4) and (batch["INPUT1"][2] == inputs.samples["INPUT1"]).all()
    with pytest.raises(TritonLabError, match="max_batch_size 8"):
        inputs.batch(9)
    same = InputSet.from_model(server.http_url, "add_sub")  # by URL; same seed, same values
    assert (same.samples["INPUT0"] == inputs.samples["INPUT0"]).all()


def test_unknown_model_quotes_triton(server):
    with pytest.raises(TritonLabError) as error:
        InputSet.from_model(server, "no_such_model")
    assert "no_such_model" in error.value.message and "Triton refused" in error.value.message


def test_variable_dims_need_a_shape():
    with pytest.raises(TritonLabError) as error:
        InputSet.from_config(CONFIG)
    assert "input_ids" in error.value.message and "shapes={'input_ids': [...]}" in error.value.fix
    assert "--shape input_ids:" in error.value.fix and "without the batch dimension" in error.value.fix


def test_generated_values_by_type():
    inputs = InputSet.from_config(CONFIG, shapes={"input_ids": [16]})
    assert set(inputs.samples) == {"input_ids", "text", "scale"}  # optional inputs are left out
    assert inputs.samples["input_ids"].shape == (16,) and not inputs.samples["input_ids"].any()  # int: zeros
    assert inputs.samples["input_ids"].dtype == np.int64
    assert inputs.datatypes["text"] == "BYTES" and list(inputs.samples["text"]) == [b"tritonlab"] * 2
    assert inputs.samples["scale"].dtype == np.float16
    assert inputs.batch(2)["text"].shape == (2, 2)


def test_unknown_names_are_named():
    with pytest.raises(TritonLabError) as error:
        InputSet.from_config(CONFIG, shapes={"input_ids": [4]}, arrays={"tokens": [1, 2]})
    assert "'tokens'" in error.value.message and "input_ids" in error.value.fix


def test_given_arrays_take_the_config_dtype():
    inputs = InputSet.from_config(CONFIG, arrays={"input_ids": [101, 2009, 102], "text": ["a", "b"]})
    assert inputs.samples["input_ids"].dtype == np.int64 and list(inputs.samples["input_ids"]) == [101, 2009, 102]
    assert list(inputs.samples["text"]) == [b"a", b"b"]


def test_not_batching_models_take_whole_tensors():
    inputs = InputSet.from_arrays({"x": np.ones((2, 3), np.float32), "s": np.array(["hi"])}, batching=False)
    assert inputs.datatypes == {"x": "FP32", "s": "BYTES"}
    assert inputs.batch(1)["x"].shape == (2, 3)
    with pytest.raises(TritonLabError, match="does not batch"):
        inputs.batch(2)


def test_perf_analyzer_json(tmp_path):
    inputs = InputSet.from_config(CONFIG, shapes={"input_ids": [2]})
    data = json.loads(inputs.write_perf_analyzer_json(tmp_path / "in.json").read_text())
    sample = data["data"][0]
    assert sample["input_ids"] == {"content": [0, 0], "shape": [2]}  # no batch dimension: perf_analyzer adds it
    assert sample["text"] == {"content": ["tritonlab", "tritonlab"], "shape": [2]}
    assert sample["scale"]["shape"] == [3] and len(sample["scale"]["content"]) == 3
