"""tritonlab's preprocessing model for the TensorRT-LLM ensemble: prompt text -> token ids.

Inputs QUERY (string), REQUEST_OUTPUT_LEN, optional END_ID / PAD_ID; outputs INPUT_ID (right-padded; the
tensorrt_llm model reads the true lengths from REQUEST_INPUT_LEN), REQUEST_INPUT_LEN, REQUEST_OUTPUT_LEN,
OUT_END_ID, OUT_PAD_ID. The tokenizer comes from the ``tokenizer_dir`` parameter in config.pbtxt.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.tokenizer = AutoTokenizer.from_pretrained(params["tokenizer_dir"])
        self.add_special_tokens = params.get("add_special_tokens", "true").lower() in ("true", "1", "yes")
        self.end_id = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.end_id

    def _optional(self, request, name, default, batch):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return np.full((batch, 1), default, dtype=np.int32)
        return tensor.as_numpy().astype(np.int32).reshape(batch, 1)

    def execute(self, requests):
        responses = []
        for request in requests:
            queries = pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy().reshape(-1)
            batch = len(queries)
            output_len = pb_utils.get_input_tensor_by_name(request, "REQUEST_OUTPUT_LEN").as_numpy()
            end_id = self._optional(request, "END_ID", self.end_id, batch)
            pad_id = self._optional(request, "PAD_ID", self.pad_id, batch)
            ids = [self.tokenizer.encode(_text(q), add_special_tokens=self.add_special_tokens) for q in queries]
            width = max(len(row) for row in ids)
            padded = [row + [int(pad_id[i, 0])] * (width - len(row)) for i, row in enumerate(ids)]
            tensors = [
                pb_utils.Tensor("INPUT_ID", np.array(padded, dtype=np.int32)),
                pb_utils.Tensor("REQUEST_INPUT_LEN", np.array([[len(row)] for row in ids], dtype=np.int32)),
                pb_utils.Tensor("REQUEST_OUTPUT_LEN", output_len.astype(np.int32).reshape(batch, 1)),
                pb_utils.Tensor("OUT_END_ID", end_id),
                pb_utils.Tensor("OUT_PAD_ID", pad_id),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
