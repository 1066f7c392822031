"""A torch model served by the embedded server's python backend: KIND_CPU anywhere, KIND_GPU + CUDA tensors on a GPU.

    repo = write_torch_mlp_repository(tmp_dir, device="cuda")   # or "cpu"
    with start_server(repo) as server: ...

The weights come from ``build_mlp()`` (seeded), so a test can compare Triton's answer with the same module
run in-process.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from google.protobuf import text_format

if TYPE_CHECKING:  # pragma: no cover
    import torch

MODEL_NAME = "torch_mlp"
IN_FEATURES, HIDDEN, OUT_FEATURES = 64, 256, 16
SEED = 0
_MODEL_PY = Path(__file__).with_name("torch_mlp_model") / "model.py"


def build_mlp() -> torch.nn.Module:
    """The example network with its seeded weights (float32, on the CPU)."""
    import torch

    generator = torch.Generator().manual_seed(SEED)
    model = torch.nn.Sequential(
        torch.nn.Linear(IN_FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT_FEATURES)
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def model_config(device: Literal["cpu", "cuda"], instances: int = 1, max_batch_size: int = 64) -> str:
    """config.pbtxt text, built through Triton's own ModelConfig protobuf."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=MODEL_NAME, backend="python", max_batch_size=max_batch_size)
    config.input.add(name="INPUT", data_type=mc.TYPE_FP32, dims=[IN_FEATURES])
    config.output.add(name="OUTPUT", data_type=mc.TYPE_FP32, dims=[OUT_FEATURES])
    kind = mc.ModelInstanceGroup.KIND_GPU if device == "cuda" else mc.ModelInstanceGroup.KIND_CPU
    group = config.instance_group.add(kind=kind, count=instances)
    if device == "cuda":
        group.gpus.append(0)
    config.dynamic_batching.max_queue_delay_microseconds = 200
    # Let the backend hand GPU-resident inputs to the model as they are (no copy to the CPU first).
    config.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value = "no"
    return text_format.MessageToString(config)


def write_torch_mlp_repository(dest: str | Path, device: Literal["cpu", "cuda"] = "cpu", instances: int = 1) -> Path:
    """Write ``dest/torch_mlp/{config.pbtxt,1/model.py}`` and return ``dest``."""
    dest = Path(dest)
    model_dir = dest / MODEL_NAME
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(model_config(device, instances))
    shutil.copyfile(_MODEL_PY, model_dir / "1" / "model.py")
    return dest
