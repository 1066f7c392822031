"""The torch example served by the embedded server on the CPU (the H200 run uses the same code on KIND_GPU)."""

from __future__ import annotations

import time

import numpy as np
import torch
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonlab.examples.torch_mlp import IN_FEATURES, OUT_FEATURES, build_mlp, model_config, write_torch_mlp_repository
from tritonlab.server import Server, start_server


def test_config_is_a_valid_model_config_for_each_device():
    for device, kind in (("cpu", "KIND_CPU"), ("cuda", "KIND_GPU")):
        config = text_format.Parse(model_config(device), model_config_pb2.ModelConfig())
        assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == kind
        assert config.max_batch_size == 64 and list(config.input[0].dims) == [IN_FEATURES]
    assert "gpus: 0" in model_config("cuda")


def _wait_for_log(server: Server, text: str, timeout_s: float = 15.0) -> str:
    # the python backend forwards a model's log lines to the server log asynchronously, after the response
    deadline = time.monotonic() + timeout_s
    while text not in (log := server.logs()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return log


def test_triton_answers_like_the_in_process_model(tmp_path):
    repo = write_torch_mlp_repository(tmp_path, device="cpu")
    x = np.random.default_rng(1).standard_normal((5, IN_FEATURES)).astype(np.float32)
    with start_server(repo) as server:
        request = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        got = server.grpc_client().infer("torch_mlp", [request]).as_numpy("OUTPUT")
        log = _wait_for_log(server, "computed on cpu")
    with torch.inference_mode():
        want = build_mlp()(torch.from_numpy(x)).numpy()
    assert got.shape == (5, OUT_FEATURES)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert "runs on cpu (torch.float32)" in log and "computed on cpu" in log
