"""tritonlab's postprocessing model for the TensorRT-LLM ensemble: token ids -> text.

Inputs TOKENS_BATCH [batch, beams, tokens] and SEQUENCE_LENGTH [batch, beams] from the tensorrt_llm model;
output OUTPUT [batch, beams] strings. In streaming (decoupled) mode each response carries only the new tokens.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from transformers import AutoTokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.tokenizer = AutoTokenizer.from_pretrained(params["tokenizer_dir"])
        self.skip_special_tokens = params.get("skip_special_tokens", "true").lower() in ("true", "1", "yes")

    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            texts = [
                [
                    self.tokenizer.decode(tokens[b, k, : lengths[b, k]], skip_special_tokens=self.skip_special_tokens)
                    for k in range(tokens.shape[1])
                ]
                for b in range(tokens.shape[0])
            ]
            output = pb_utils.Tensor("OUTPUT", np.array(texts, dtype=object))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
