"""encoder (python backend): token ids -> a 64-dim embedding, on an emulated accelerator.

The answer is computed for real with numpy (embed each token, one dense layer with tanh, mean-pool, project).
The *time* an execution takes follows an accelerator's cost model instead of this CPU's: every execution
occupies its instance for ``LAUNCH_S + TOKEN_S x rows x padded length``, a fixed launch cost (that dynamic
batching shares between the requests of a batch) plus a cost per token computed (that padding inflates), as a
GPU kernel would. The wait leaves the CPU cores free, so on a 2-core laptop the load generator and Prometheus do
not distort what the lab measures. Two config parameters change how it runs:

- ``pad_to``: pad every request to this many tokens first, as a model built for one static shape does. Padding
  is computed like real tokens and masked out of the mean, so it changes the cost, never the answer.
- ``fail_every``: fail every N-th execution (a flaky dependency) by raising, which Triton counts as failed
  requests (``nv_inference_request_failure{reason="BACKEND"}``). In Triton 2.51 an error returned *inside* a
  response is counted as a success instead; token ids outside [0, VOCAB) get such an error response. (A model
  that has raised does not unload until Triton's exit timeout: stopping the server takes a few seconds more.)

Self-contained (numpy only): the stub imports nothing from tritonlab.
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

VOCAB, HIDDEN, OUT, SEED = 1000, 64, 64, 0
LAUNCH_S = 0.002  # per execution, whatever its batch size
TOKEN_S = 4e-6  # per token computed, padding included (padding 16x costs clearly more than the launch)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.pad_to = int(parameters.get("pad_to", "0") or 0)
        self.fail_every = int(parameters.get("fail_every", "0") or 0)
        self.executions = 0
        rng = np.random.default_rng(SEED)
        self.embedding = rng.standard_normal((VOCAB, HIDDEN), dtype=np.float32)
        self.dense = rng.standard_normal((HIDDEN, HIDDEN), dtype=np.float32) / np.sqrt(HIDDEN)
        self.project = rng.standard_normal((HIDDEN, OUT), dtype=np.float32) / np.sqrt(HIDDEN)

    def execute(self, requests):
        started = time.perf_counter()
        self.executions += 1
        if self.fail_every and self.executions % self.fail_every == 0:
            raise pb_utils.TritonModelException("simulated failure: the feature store timed out (fail_every)")
        responses = [None] * len(requests)
        good, tokens = [], []
        for i, request in enumerate(requests):
            ids = pb_utils.get_input_tensor_by_name(request, "TOKENS").as_numpy()
            if ids.size == 0 or ids.min() < 0 or ids.max() >= VOCAB:
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"token ids must be in [0, {VOCAB})")
                )
            else:
                good.append(i)
                tokens.append(ids)
        computed = 0
        if good:
            embeddings, computed = self._embed(tokens)
            for i, embedding in zip(good, embeddings, strict=True):
                responses[i] = pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", embedding)])
        device_time = LAUNCH_S + TOKEN_S * computed
        time.sleep(max(0.0, device_time - (time.perf_counter() - started)))
        return responses

    def _embed(self, tokens):
        # Triton batches requests of equal shape only, so the rows of a batch have one length.
        batch = np.concatenate(tokens).astype(np.int64)
        rows, length = batch.shape
        padded = max(length, self.pad_to)
        ids = np.zeros((rows, padded), dtype=np.int64)
        ids[:, :length] = batch
        hidden = np.tanh(self.embedding[ids] @ self.dense)
        out = hidden[:, :length].mean(axis=1) @ self.project  # padding costs time but never changes the answer
        return np.split(out.astype(np.float32), np.cumsum([len(t) for t in tokens])[:-1]), rows * padded
