"""The naive baseline: the plain transformers pipeline behind a small HTTP server, one inference at a time.

It speaks just enough of Triton's HTTP/REST (KServe v2) protocol — ready, model metadata and config, infer with
JSON or binary tensors, and its own honest /stats (one execution per request: it never batches) — for the very same
client and load generator to measure it side by side with Triton:

    with NaiveServer(clf.save_pretrained("naive_model")) as naive:
        run_bench(naive.http_url, "text_classifier", protocol="http", ...)

Run on its own:  python -m tritonlab.labs.naive_server --model-dir DIR --port PORT
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Self

MODEL_NAME = "text_classifier"


def decode_request(body: bytes, header_length: int | None) -> list[str]:
    """The TEXT strings of a v2 infer request, sent as JSON data or with the binary tensor extension."""
    header = json.loads(body[:header_length] if header_length else body)
    binary = memoryview(body)[header_length:] if header_length else memoryview(b"")
    for tensor in header.get("inputs", []):
        if tensor.get("name") != "TEXT":
            continue
        size = tensor.get("parameters", {}).get("binary_data_size")
        if size is None:
            return [str(x) for x in _flatten(tensor.get("data", []))]
        texts, offset = [], 0
        while offset < size:
            (length,) = struct.unpack_from("<I", binary, offset)
            texts.append(bytes(binary[offset + 4 : offset + 4 + length]).decode("utf-8", errors="replace"))
            offset += 4 + length
        return texts
    raise ValueError("the request has no input named TEXT")


def _flatten(data: Any) -> list[Any]:
    return [y for x in data for y in _flatten(x)] if isinstance(data, list) else [data]


class _Stats:
    """Counters in the shape of Triton's /v2/models/M/stats, so the same benchmark code reads both servers."""

    def __init__(self) -> None:
        self.requests = self.texts = self.compute_ns = self.queue_ns = self.last_ms = 0
        self.batches: dict[int, int] = {}

    def add(self, texts: int, queue_ns: int, compute_ns: int) -> None:
        self.requests += 1
        self.texts += texts
        self.queue_ns += queue_ns
        self.compute_ns += compute_ns
        self.batches[texts] = self.batches.get(texts, 0) + 1
        self.last_ms = time.time_ns() // 1_000_000

    def as_triton(self) -> dict[str, Any]:
        return {"model_stats": [{
            "name": MODEL_NAME, "version": "1", "last_inference": self.last_ms,
            "inference_count": self.texts, "execution_count": self.requests,
            "inference_stats": {"success": {"count": self.requests, "ns": self.queue_ns + self.compute_ns},
                                "queue": {"count": self.requests, "ns": self.queue_ns},
                                "compute_infer": {"count": self.requests, "ns": self.compute_ns}},
            "batch_stats": [{"batch_size": size, "compute_infer": {"count": count}}
                            for size, count in sorted(self.batches.items())],
        }]}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Triton's clients expect
    pipeline: Any = None
    lock = threading.Lock()
    stats = _Stats()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the load generator sends thousands
        pass

    def _reply(self, status: int, payload: dict[str, Any] | None = None) -> None:
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{MODEL_NAME}/ready"):
            self._reply(200)
        elif self.path == f"/v2/models/{MODEL_NAME}":
            self._reply(200, _METADATA)
        elif self.path == f"/v2/models/{MODEL_NAME}/config":
            self._reply(200, _CONFIG)
        elif self.path == f"/v2/models/{MODEL_NAME}/stats":
            with self.lock:
                self._reply(200, self.stats.as_triton())
        else:
            self._reply(404, {"error": f"naive server: no route {self.path}"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != f"/v2/models/{MODEL_NAME}/infer":
            self._reply(404, {"error": f"naive server: no route {self.path}"})
            return
        try:
            length = self.headers.get("Inference-Header-Content-Length")
            texts = decode_request(body, int(length) if length else None)
        except (ValueError, KeyError, struct.error) as e:
            self._reply(400, {"error": f"naive server: {e}"})
            return
        arrived = time.perf_counter_ns()
        with self.lock:  # the naive part: one pipeline call at a time, whatever the concurrency
            started = time.perf_counter_ns()
            answers = self.pipeline(texts)
            self.stats.add(len(texts), started - arrived, time.perf_counter_ns() - started)
        n = len(texts)
        self._reply(
            200,
            {
                "model_name": MODEL_NAME,
                "outputs": [
                    {"name": "LABEL", "datatype": "BYTES", "shape": [n, 1], "data": [a["label"] for a in answers]},
                    {"name": "SCORE", "datatype": "FP32", "shape": [n, 1], "data": [a["score"] for a in answers]},
                ],
            },
        )


_METADATA = {
    "name": MODEL_NAME,
    "versions": ["1"],
    "platform": "transformers_pipeline",
    "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1, 1]}],  # [batch, 1] like the ensemble
    "outputs": [
        {"name": "LABEL", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "SCORE", "datatype": "FP32", "shape": [-1, 1]},
    ],
}


# The same interface as Triton's text_classifier ensemble (which batches up to 32; this server never does).
_CONFIG = {
    "name": MODEL_NAME,
    "platform": "transformers_pipeline",
    "max_batch_size": 32,
    "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
    "output": [{"name": "LABEL", "data_type": "TYPE_STRING", "dims": [1]},
               {"name": "SCORE", "data_type": "TYPE_FP32", "dims": [1]}],
}  # fmt: skip


def serve(model_dir: str, port: int, device: str = "cpu") -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    _Handler.pipeline = transformers.pipeline("text-classification", model=model_dir, device=device)
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    httpd.daemon_threads = True
    print(f"naive server ready on http://127.0.0.1:{port}", flush=True)
    httpd.serve_forever()


class NaiveServer:
    """The baseline in its own process (so it does not share the notebook's GIL), on a free 127.0.0.1 port."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", ready_timeout: float = 180.0) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.port = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        from tritonlab.errors import ServerStartError
        from tritonlab.server.ports import free_ports
        from tritonlab.server.process import die_with_parent_preexec

        if not (self.model_dir / "config.json").is_file():
            raise ServerStartError(
                f"{self.model_dir} holds no saved model (config.json is missing)",
                fix="save one first: clf.save_pretrained(DIR)",
            )
        (self.port,) = free_ports(1)
        command = [sys.executable, "-m", __name__, "--model-dir", str(self.model_dir), "--port", str(self.port)]
        # A file, not a pipe: nobody reads a pipe after start-up, and the server's tracebacks for connections the
        # load generator drops at each window's end would fill it and block the server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server; closed by stop())
        self.process = subprocess.Popen(
            [*command, "--device", self.device],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent_preexec(),
            start_new_session=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                output = self.log.read().decode(errors="replace")
                raise ServerStartError(
                    f"the naive server exited with code {self.process.returncode}:\n{output[-2000:]}",
                    fix="check that the model directory was written by clf.save_pretrained",
                )
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise ServerStartError(f"the naive server was not ready within {self.ready_timeout:.0f} s", fix="try again")

    def stop(self) -> None:
        from tritonlab.server.process import stop_process_tree

        if self.process is not None and self.process.poll() is None:
            stop_process_tree(self.process.pid, None, grace=5.0)
            self.process.wait(timeout=10)
        if self.log is not None:
            self.log.close()
        self.process = self.log = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    serve(args.model_dir, args.port, args.device)


if __name__ == "__main__":
    main()
