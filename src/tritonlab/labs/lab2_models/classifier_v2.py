"""classifier version 2: LOGITS = FEATURES @ W2 + b2."""

import triton_python_backend_utils as pb_utils

from tritonlab.labs.lab2 import classify

VERSION = 2


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LOGITS", classify(features, VERSION))]))
        return responses
