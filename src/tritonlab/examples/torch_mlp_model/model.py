"""torch_mlp (python backend): a seeded torch MLP, fp16 on a GPU instance, fp32 on a CPU instance.

On KIND_GPU the inputs arrive as CUDA tensors (FORCE_CPU_ONLY_INPUT_TENSORS=no) when the client sent them to
GPU memory, are moved there otherwise, and the outputs go back to Triton as CUDA tensors through DLPack.
"""

import json

import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack

from tritonlab.examples.torch_mlp import build_mlp


class TritonPythonModel:
    def initialize(self, args):
        on_gpu = args["model_instance_kind"] == "GPU"
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if on_gpu else "cpu")
        self.dtype = torch.float16 if on_gpu else torch.float32
        self.model = build_mlp().to(self.device, self.dtype)
        self.reported = False
        name = json.loads(args["model_config"])["name"]
        pb_utils.Logger.log_info(f"{name}: instance {args['model_instance_name']} runs on {self.device} ({self.dtype})")

    def execute(self, requests):
        # Dynamic batching may hand over several requests: one forward pass for all of them.
        inputs = [from_dlpack(pb_utils.get_input_tensor_by_name(r, "INPUT").to_dlpack()) for r in requests]
        sizes = [t.shape[0] for t in inputs]
        with torch.inference_mode():
            x = torch.cat([t.to(self.device) for t in inputs]).to(self.dtype)
            y = self.model(x).float()
        responses = []
        for chunk in torch.split(y, sizes):
            out = pb_utils.Tensor.from_dlpack("OUTPUT", to_dlpack(chunk.contiguous()))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        if not self.reported:
            self.reported = True
            pb_utils.Logger.log_info(
                f"torch_mlp: first batch of {sum(sizes)} computed on {y.device}; "
                f"output tensor is_cpu={responses[0].output_tensors()[0].is_cpu()}"
            )
        return responses
