"""scale: FEATURES = RAW / 10 (the preprocessing step; tritonlab.labs.lab2.scale is the reference the checks use).

Self-contained (numpy only) so that it serves in a container too, where tritonlab is not installed.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "RAW").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("FEATURES", (raw / 10.0).astype(np.float32))]))
        return responses
