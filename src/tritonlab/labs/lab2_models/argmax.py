"""argmax: LABEL = index of the largest logit (the postprocessing step)."""

import triton_python_backend_utils as pb_utils

from tritonlab.labs.lab2 import argmax


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LABEL", argmax(logits))]))
        return responses
