"""preprocessing (python backend): text_input (UTF-8) -> input_ids INT32 [-1], with ``<s>`` first.

Self-contained (numpy + ``tokenizers``); the tokenizer is ``tokenizer.json`` beside this file.
"""

import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0]
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            ids = np.array(self.tokenizer.encode(text).ids, dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("input_ids", ids)]))
        return responses
