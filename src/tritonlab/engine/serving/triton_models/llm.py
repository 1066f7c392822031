"""llm (python backend, decoupled): the embedded engine with iteration-level batching, one response per token.

Inputs: input_ids INT32 [-1] (from preprocessing), max_tokens INT32 [1], ignore_eos BOOL [1] (optional).
Output: output_ids INT32 [1, 1] per response; the last token's response carries the final flag.

Self-contained (torch, numpy, and ``engine_runtime.py`` copied beside this file from tritonlab.engine.runtime):
no tritonlab import, so the same model directory serves in the embedded server and in a container. Parameters:
``batching_strategy`` (inflight | static), ``engine_dir`` (default: ``engine/`` beside this file), ``torch_threads``,
``batch_wait_ms`` (static batch collection), ``step_log`` (true: one JSON line per admission/step/finish in
``<model dir>/step_log.jsonl``, the server-side record of who ran together).
"""

import itertools
import json
import os
import queue
import sys
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class TritonPythonModel:
    def initialize(self, args):
        # The engine runtime (and torch with it) is imported here, not at the top: before the instance starts, Triton
        # imports this file in a stub of its own (to auto-complete the configuration), and a top-level torch import
        # made every load (each batching switch) ~2.5 s slower.
        import engine_runtime as rt

        self._rt = rt
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        engine_dir = params.get("engine_dir") or os.path.join(here, "engine")
        # One torch thread by default: Triton's own threads and the clients need the other cores.
        threads = int(params.get("torch_threads", "1") or 1)
        # KIND_GPU (an engine built for cuda): the engine and its KV cache go on the GPU Triton gave this instance.
        device = None
        if args.get("model_instance_kind") == "GPU":
            device = f"cuda:{int(args.get('model_instance_device_id') or 0)}"
        # EngineMismatchError (built for another device) fails the load with its message.
        self.engine = rt.Engine.load(engine_dir, num_threads=threads, device=device)
        self._log_file = None
        self._log_lock = threading.Lock()
        trace = None
        if params.get("step_log", "false").lower() == "true":
            try:
                self._log_file = open(os.path.join(args["model_repository"], "step_log.jsonl"), "w")  # noqa: SIM115
            except OSError as e:  # a read-only repository (the docker backend mounts it so): serve without the log
                pb_utils.Logger.log_warn(f"llm: step log disabled, cannot write into the repository: {e}")
            else:
                trace = self._write_trace
        # Responses leave from a thread of their own: each send is a round trip to the server process (about half a
        # millisecond), and sixteen of them per step on the batching thread would stall the engine that long. The
        # compiled step releases the GIL (engine_runtime.CpuStep), so this thread sends step n's tokens while step
        # n + 1 computes. One thread, first in first out: a request's tokens keep their order. Bounded at one step's
        # tokens: when sending is the slower side (a fast GPU step), the batching thread waits for it instead of
        # running ahead and queueing tokens (an unbounded queue held new requests' first tokens ~0.2 s on the H200).
        self._outbox = queue.Queue(maxsize=self.engine.max_batch_size)
        self._sending = threading.Thread(target=self._send_loop, name="llm-sender", daemon=True)
        self._sending.start()
        self.batcher = rt.Batcher(
            self.engine,
            params.get("batching_strategy", "inflight"),
            batch_wait_s=float(params.get("batch_wait_ms", "5")) / 1000.0,
            trace=trace,
        ).start()
        self._ids = itertools.count()
        pb_utils.Logger.log_info(
            f"llm: {engine_dir} on {self.engine.device} ({self.batcher.strategy} batching, "
            f"max_batch_size={self.engine.max_batch_size}, "
            f"max_input_len={self.engine.max_input_len}, max_seq_len={self.engine.max_seq_len}, "
            f"KV cache {self.engine.kv_cache_bytes} bytes)"
        )

    def _write_trace(self, event):
        with self._log_lock:
            self._log_file.write(json.dumps(event) + "\n")
            self._log_file.flush()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy().reshape(-1)
                max_tokens = int(pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy().reshape(-1)[0])
                ignore = pb_utils.get_input_tensor_by_name(request, "ignore_eos")
                ignore_eos = bool(ignore.as_numpy().reshape(-1)[0]) if ignore is not None else False
                seq = self._rt.Sequence(
                    id=request.request_id() or f"req-{next(self._ids)}",
                    prompt=[int(t) for t in ids],
                    max_tokens=max_tokens,
                    emit=self._emitter(sender),
                    fail=self._failer(sender),
                    stop_at_eos=not ignore_eos,
                )
                self.batcher.submit(seq)
            except Exception as exc:  # LimitError and malformed requests: an error response, nothing queued
                self._failer(sender)(str(exc))
        return None  # decoupled: responses are sent by the batcher thread

    def _send_loop(self):
        while (item := self._outbox.get()) is not None:
            sender, token, final, error = item
            try:
                if error is None:
                    tensor = pb_utils.Tensor("output_ids", np.array([[token]], dtype=np.int32))
                    response = pb_utils.InferenceResponse([tensor])
                else:
                    response = pb_utils.InferenceResponse(error=pb_utils.TritonError(error))
                sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)
            except Exception as exc:  # a client gone away must not stop the responses of every other request
                pb_utils.Logger.log_error(f"llm: could not send a response: {exc}")

    def _emitter(self, sender):
        def emit(token, final):
            self._outbox.put((sender, token, final, None))

        return emit

    def _failer(self, sender):
        def fail(message):
            self._outbox.put((sender, None, True, message))

        return fail

    def finalize(self):
        self.batcher.stop()  # every unfinished request gets its error response (through the outbox)
        self._outbox.put(None)
        self._sending.join(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
