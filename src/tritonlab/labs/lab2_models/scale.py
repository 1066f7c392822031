"""scale: FEATURES = RAW / 10 (the preprocessing step)."""

import triton_python_backend_utils as pb_utils

from tritonlab.labs.lab2 import scale


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "RAW").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("FEATURES", scale(raw))]))
        return responses
