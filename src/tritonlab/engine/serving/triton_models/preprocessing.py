"""preprocessing (python backend): text_input (UTF-8) -> input_ids INT32 [-1], with ``<s>`` first.

Optional ``stream`` / ``exclude_input_in_output`` (BOOL, what genai-perf sends for TRT-LLM): this ensemble always
streams and never returns the prompt, so true is accepted and false refused with an error naming the input.

Self-contained (numpy + ``tokenizers``); the tokenizer is ``tokenizer.json`` beside this file.
"""

import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

# What this ensemble always does, for the inputs TRT-LLM's ensemble lets a client switch off.
ALWAYS_TRUE = {
    "stream": "this ensemble always streams one response per token",
    "exclude_input_in_output": "this ensemble's output never contains the prompt",
}


def _flag(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else bool(tensor.as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))

    def execute(self, requests):
        responses = []
        for request in requests:
            refused = [name for name in ALWAYS_TRUE if _flag(request, name) is False]
            if refused:
                message = f"{refused[0]}=false is not supported: {ALWAYS_TRUE[refused[0]]} (send true or leave it out)"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
                continue
            raw = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0]
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            ids = np.array(self.tokenizer.encode(text).ids, dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("input_ids", ids)]))
        return responses
