"""classifier (python backend): runs the TorchScript file `model.pt` beside this file, as Triton's
pytorch_libtorch backend would in a container.

KIND_CPU: float32 on the CPU, with torch's threads shared between instances. KIND_GPU: float16 (or the
"precision" parameter) on the instance's GPU. Self-contained (torch + numpy), like the tokenizer.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # torch is imported here, not at the top: before the instances start, Triton imports this file in a stub of
        # its own (to auto-complete the configuration), and a top-level torch import made every load ~2.5 s slower.
        import torch

        self.torch = torch
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        on_gpu = args["model_instance_kind"] == "GPU"
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if on_gpu else "cpu")
        precision = parameters.get("precision", "fp16" if on_gpu else "fp32")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        if not on_gpu:
            # Several CPU instances each running torch on every core would fight over the cores, and Triton's own
            # threads (gRPC/HTTP, the batcher, the stubs' IPC) need one: split the others evenly. Measured on
            # 2 cores: 1 torch thread serves ~2.4x more with dynamic batching, 2 threads only ~2.1x.
            # The "torch_threads" parameter overrides the split.
            instances = sum(g.get("count", 1) for g in config.get("instance_group", [])) or 1
            spare = max(1, (os.cpu_count() or 1) - 1)
            threads = int(parameters.get("torch_threads", "0")) or max(1, spare // instances)
            torch.set_num_threads(threads)
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.module = torch.jit.load(path, map_location=self.device).eval().to(self.dtype)
        pb_utils.Logger.log_info(
            f"{args['model_instance_name']}: {path} on {self.device} ({self.dtype}, {torch.get_num_threads()} threads)"
        )

    def execute(self, requests):
        # Dynamic batching may hand over several requests: one forward pass for all of them.
        ids = [pb_utils.get_input_tensor_by_name(r, "input_ids").as_numpy() for r in requests]
        masks = [pb_utils.get_input_tensor_by_name(r, "attention_mask").as_numpy() for r in requests]
        sizes = [len(x) for x in ids]
        torch = self.torch
        with torch.no_grad():
            logits = self.module(
                torch.from_numpy(np.concatenate(ids)).to(self.device),
                torch.from_numpy(np.concatenate(masks)).to(self.device),
            )
            logits = logits.float().cpu().numpy()
        responses, start = [], 0
        for size in sizes:
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("logits", logits[start : start + size])]))
            start += size
        return responses
