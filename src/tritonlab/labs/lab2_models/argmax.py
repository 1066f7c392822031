"""argmax: LABEL = index of the largest logit (the postprocessing step; tritonlab.labs.lab2.argmax is the reference
the checks use). Self-contained (numpy only) so that it serves in a container too, where tritonlab is not installed.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy()
            label = np.argmax(logits, axis=-1).astype(np.int32).reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LABEL", label)]))
        return responses
