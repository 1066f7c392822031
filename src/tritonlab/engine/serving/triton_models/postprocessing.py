"""postprocessing (python backend): one token id -> its text (``▁`` word markers become spaces).

Runs once per streamed token. Self-contained (numpy + ``tokenizers``); the tokenizer is ``tokenizer.json`` here.
"""

import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        special = {tokenizer.token_to_id(t) for t in ("<unk>", "<s>", "</s>")}
        # Each token decodes on its own (Metaspace, no byte pieces): a lookup table, built once.
        self.text = [
            "" if i in special else (tokenizer.id_to_token(i) or "").replace("\u2581", " ")
            for i in range(tokenizer.get_vocab_size())
        ]

    def execute(self, requests):
        # Dynamic batching: each request is [n, k] token ids (one row per batch element, usually [1, 1]).
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "output_ids").as_numpy()
            rows = ids.reshape(ids.shape[0], -1)
            texts = [
                "".join(self.text[int(i)] if 0 <= int(i) < len(self.text) else "" for i in row).encode("utf-8")
                for row in rows
            ]
            outputs = [
                pb_utils.Tensor("text_output", np.array(texts, dtype=np.object_).reshape(-1, 1)),
                pb_utils.Tensor("output_ids", rows.astype(np.int32)),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
