"""Lab 1 (01_setup) checkpoints: the server runs, the learner's readiness probe, first inferences, metadata."""

from __future__ import annotations

import socket
from typing import Any

import numpy as np

from tritonlab.checks.core import Context, Fail, checkpoint
from tritonlab.checks.learner import call_learner
from tritonlab.checks.values import SubmittedFunction
from tritonlab.server.ports import free_ports
from tritonlab.versions import triton_server_version

# The inputs every learner sends to add_sub in the inference exercises.
INPUT0 = [[1.0, 2.0, 3.0, 4.0]]
INPUT1 = [[10.0, 20.0, 30.0, 40.0]]


@checkpoint(
    "lab1.server_ready",
    title="A Triton server is running and ready",
    points=1,
    hint="Run the cell that starts the server (server = start_server()) and make sure it printed 'running'.",
)
def server_ready(ctx: Context) -> str:
    server = ctx.require_server()
    live, _ = ctx.server_get("/v2/health/live")
    ready, _ = ctx.server_get("/v2/health/ready")
    if live != 200:
        raise Fail(f"GET /v2/health/live answered {live}, expected 200")
    if ready != 200:
        raise Fail(f"the server is live but GET /v2/health/ready answered {ready}: a model did not load")
    model, _ = ctx.server_get("/v2/models/add_sub/ready")
    if model != 200:
        raise Fail("the server is ready but model add_sub is not: serve the example repository (start_server())")
    _, meta = ctx.server_get("/v2")
    version = meta.get("version") if isinstance(meta, dict) else None
    if version != triton_server_version():
        raise Fail(f"the server reports version {version}, the course uses Triton {triton_server_version()}")
    return f"Triton {version} at {server.http_url} is live and ready, and add_sub is ready"


def _call_probe(probe: SubmittedFunction, url: str, limit: float = 15.0) -> tuple[Any, BaseException | None, float]:
    """Run the learner's probe in a worker process, so that a hanging or hostile probe cannot touch the checker."""
    value, error, elapsed = call_learner(probe, url, limit=limit)
    if elapsed is None:
        raise Fail(f"is_server_ready({url!r}) did not return within {limit:.0f} s: give your request a timeout")
    return value, error, elapsed


def _probe_cases(ctx: Context) -> tuple[SubmittedFunction, list[tuple[str, str, bool]]]:
    probe = ctx.value("probe", of="lab1.readiness_probe")
    if not isinstance(probe, SubmittedFunction):
        raise Fail(f"the submitted probe is a {type(probe).__name__}, not a function")
    server = ctx.require_server()
    stopped = f"http://127.0.0.1:{free_ports(1)[0]}"
    return probe, [
        ("your running server", server.http_url, True),
        ("a port where nothing listens", stopped, False),
        ("a URL with an unknown host name", "http://no-such-host.invalid:8000", False),
    ]


@checkpoint(
    "lab1.readiness_probe",
    title="Your readiness probe tells ready from not ready",
    points=2,
    hint="GET {url}/v2/health/ready with a timeout; return True on HTTP 200, and False (do not raise) "
    "when the request fails.",
)
def readiness_probe(ctx: Context) -> str:
    probe, cases = _probe_cases(ctx)
    for label, url, expected in cases:
        value, error, _ = _call_probe(probe, url)
        if error is not None:
            raise Fail(f"is_server_ready({url!r}) for {label} raised {type(error).__name__}: {error}; "
                       f"it should return {expected}")  # fmt: skip
        if bool(value) != expected:
            raise Fail(f"is_server_ready({url!r}) for {label} returned {value!r}, expected {expected}")
    return "your probe returns True for the live server and False for a stopped one or a bad host"


@checkpoint(
    "lab1.readiness_probe_strict",
    title="Your readiness probe returns a bool and never hangs",
    points=1,
    hint="Return exactly True or False, and pass a timeout (a few seconds) to your HTTP request.",
)
def readiness_probe_strict(ctx: Context) -> str:
    probe, cases = _probe_cases(ctx)
    for label, url, _ in cases:
        value, error, _ = _call_probe(probe, url)
        if error is None and not isinstance(value, bool):
            raise Fail(f"for {label} your probe returned {value!r} ({type(value).__name__}), not a bool")
    # A port that accepts connections but never answers: only a probe with a timeout returns.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        value, error, elapsed = _call_probe(probe, url, limit=15.0)
    finally:
        silent.close()
    if error is not None or value is not False:
        raise Fail(f"for a server that accepts but never answers your probe gave {error or value!r}, expected False")
    return f"your probe returns bools and gave up on a silent server after {elapsed:.1f} s"


def _live_add_sub(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    inputs = {"INPUT0": np.array(INPUT0, np.float32), "INPUT1": np.array(INPUT1, np.float32)}
    outputs = ctx.server_infer("add_sub", inputs)
    if not {"OUTPUT0", "OUTPUT1"} <= outputs.keys():
        raise Fail(f"add_sub returned {sorted(outputs)}, not OUTPUT0 and OUTPUT1")
    return outputs["OUTPUT0"].astype(np.float32), outputs["OUTPUT1"].astype(np.float32)


def _compare(ctx: Context, protocol: str) -> str:
    got0 = np.asarray(ctx.value("output0"), dtype=np.float32)
    got1 = np.asarray(ctx.value("output1"), dtype=np.float32)
    want0, want1 = _live_add_sub(ctx)
    for name, got, want in (("OUTPUT0", got0, want0), ("OUTPUT1", got1, want1)):
        if got.shape != want.shape:
            raise Fail(f"your {name} has shape {list(got.shape)}, the server returns {list(want.shape)} "
                       "(keep the batch dimension)")  # fmt: skip
        if not np.allclose(got, want):
            raise Fail(f"your {name} is {got.tolist()}, the server answers {want.tolist()} for INPUT0/INPUT1")
    return f"your {protocol} outputs match the server: OUTPUT0={want0.tolist()}, OUTPUT1={want1.tolist()}"


@checkpoint(
    "lab1.http_inference",
    title="First inference over HTTP",
    points=2,
    hint="Build two tritonclient.http.InferInput('INPUT0'/'INPUT1', [1, 4], 'FP32'), fill them with "
    "INPUT0/INPUT1 as float32 arrays, call server.http_client().infer('add_sub', ...), and submit "
    "result.as_numpy('OUTPUT0') and result.as_numpy('OUTPUT1').",
)
def http_inference(ctx: Context) -> str:
    return _compare(ctx, "HTTP")


@checkpoint(
    "lab1.grpc_inference",
    title="The same inference over gRPC",
    points=2,
    hint="Same as over HTTP with tritonclient.grpc and server.grpc_client().",
)
def grpc_inference(ctx: Context) -> str:
    return _compare(ctx, "gRPC")


@checkpoint(
    "lab1.metadata",
    title="Answers read from server metadata",
    points=1,
    hint="GET /v2 (or server.http_client().get_server_metadata()) returns 'version' and 'extensions'.",
)
def metadata(ctx: Context) -> str:
    version = ctx.value("version")
    extensions = ctx.value("extensions")
    _, meta = ctx.server_get("/v2")
    if not isinstance(meta, dict):
        raise Fail(f"GET /v2 did not return JSON metadata: {meta!r}")
    if str(version) != meta.get("version"):
        raise Fail(f"you answered version {version!r}; the server reports {meta.get('version')!r}")
    if not isinstance(extensions, list) or set(extensions) != set(meta.get("extensions", [])):
        raise Fail(f"you listed {len(extensions) if isinstance(extensions, list) else extensions!r} extensions; "
                   f"the server reports {len(meta.get('extensions', []))}: compare with GET /v2")  # fmt: skip
    return f"version {version} and all {len(extensions)} extensions match the server"
