"""postprocess (python backend): logits -> LABEL (the class name) and SCORE (its softmax probability).

The class names come from the "labels" parameter of this model's config (comma-separated).
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        names = config["parameters"]["labels"]["string_value"].split(",")
        self.labels = np.array([n.encode("utf-8") for n in names], dtype=object)

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy().astype(np.float64)
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = exp / exp.sum(axis=1, keepdims=True)
            best = probs.argmax(axis=1)
            label = self.labels[best].reshape(-1, 1)
            score = probs[np.arange(len(best)), best].astype(np.float32).reshape(-1, 1)
            outputs = [pb_utils.Tensor("LABEL", label), pb_utils.Tensor("SCORE", score)]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
