"""tokenizer (python backend): TEXT (UTF-8 strings) -> input_ids, attention_mask, padded to the model's length.

Self-contained on purpose (numpy + the `tokenizers` library only), so the same file serves in the embedded
server and in a Triton container. The tokenizer itself is `tokenizer.json` beside this file.
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
        # One tokenizer call for all the requests the batcher handed over.
        texts, sizes = [], []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            texts.extend(t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in raw)
            sizes.append(len(raw))
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        responses, start = [], 0
        for size in sizes:
            end = start + size
            outputs = [pb_utils.Tensor("input_ids", ids[start:end]), pb_utils.Tensor("attention_mask", mask[start:end])]
            responses.append(pb_utils.InferenceResponse(outputs))
            start = end
        return responses
