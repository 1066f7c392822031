"""classifier version 1: LOGITS = FEATURES @ W1 + b1."""

import triton_python_backend_utils as pb_utils

from tritonlab.labs.lab2 import classify

VERSION = 1


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LOGITS", classify(features, VERSION))]))
        return responses
