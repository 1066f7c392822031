"""Every owned backend against a real tritonserver 2.51.0: embedded (the nvidia-pytriton wheel's binary) and docker
(the same server in the CPU image `tritonlab image build` makes, on a real Docker engine). Each test runs once per
backend through the ``backend`` fixture, which sets TRITONLAB_BACKEND: a learner who picks docker gets the same
verdicts."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import add_sub_inputs, wait_for
from tritonlab.errors import ModelLoadError, PortInUseError, TritonLabError
from tritonlab.server import EmbeddedServer, registry, start_server

BROKEN_MODEL_PY = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        raise FileNotFoundError("weights file missing: /models/broken/weights.bin")

    def execute(self, requests):
        return []
"""


def add_broken_model(repo: Path, name: str = "broken") -> None:
    shutil.copytree(repo / "add_sub", repo / name)
    config = repo / name / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "add_sub"', f'name: "{name}"'))
    (repo / name / "1" / "model.py").write_text(BROKEN_MODEL_PY)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    found = set()
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # a stub ending meanwhile listens on nothing
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
    return found


def server_gone(server) -> bool:
    """The process (embedded) or the container (docker) no longer exists."""
    if server.backend == "docker":
        from tritonlab.container import engine

        return engine.container_exists(server.container_id) is False
    return not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE


def test_start_infer_http_and_grpc_stats_show_requests_then_stop(backend):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.float32)
    server = start_server()
    assert server.backend == backend
    try:
        assert server.is_live() and server.is_ready() and server.model_ready("add_sub")
        http_result = server.http_client().infer("add_sub", add_sub_inputs(httpclient, a, b))
        np.testing.assert_array_equal(http_result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(http_result.as_numpy("OUTPUT1"), a - b)
        grpc_result = server.grpc_client().infer("add_sub", add_sub_inputs(grpcclient, a, b))
        np.testing.assert_array_equal(grpc_result.as_numpy("OUTPUT0"), a + b)

        # Triton counts a request once its response has gone out: the second may show a moment after its answer.
        stats = lambda: server.model_stats("add_sub")["model_stats"][0]  # noqa: E731
        assert wait_for(lambda: stats()["inference_count"] == 4, timeout=5), stats()  # two requests of batch 2
        assert int(stats()["inference_stats"]["success"]["count"]) == 2
        assert server.metadata()["version"] == "2.51.0"
        assert "nv_inference_request_success" in server.metrics_text()
        assert "Started HTTPService at" in server.logs()
        record = next(r for r in registry.records() if r.http_url == server.http_url)
        assert record.backend == backend
    finally:
        server.stop()
    assert server_gone(server)
    assert not server.is_live()
    assert registry.get(record.id) is None
    assert "Started HTTPService at" in Path(server.log_path).read_text()  # the log outlives the server
    server.stop()  # idempotent


def test_a_killed_server_is_seen_as_down_and_restart_brings_it_back(example_repo, backend):
    server = start_server(example_repo)
    try:
        server.kill()  # SIGKILL, as a crash would
        assert wait_for(lambda: not server.running, timeout=10)
        assert not server.is_live()
        server.restart()
        assert server.running and server.is_ready() and server.model_ready("add_sub")
    finally:
        server.stop()


def test_every_published_port_listens_on_loopback_only(backend):
    with start_server() as server:
        ports = {server.http_port, server.grpc_port, server.metrics_port}
        listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        ours = [(c.laddr.ip, c.laddr.port) for c in listening if c.laddr.port in ports]
        assert {port for _, port in ours} == ports
        assert all(is_loopback(ip) for ip, _ in ours), ours


def test_all_sockets_of_the_embedded_server_bound_to_loopback(server):
    addresses = listening_addresses(server.pid)
    ports = {port for _, port in addresses}
    assert {server.http_port, server.grpc_port, server.metrics_port} <= ports
    assert all(is_loopback(ip) for ip, _ in addresses), addresses


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, including gRPC's IPv6 socket bound to the v4-mapped ::ffff:127.0.0.1."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_two_servers_side_by_side_on_free_ports(example_repo, backend):
    with start_server() as first, start_server(example_repo) as second:
        ports_first = {first.http_port, first.grpc_port, first.metrics_port}
        ports_second = {second.http_port, second.grpc_port, second.metrics_port}
        assert len(ports_first | ports_second) == 6
        a = np.ones((1, 4), dtype=np.float32)
        for s in (first, second):
            out = s.http_client().infer("add_sub", add_sub_inputs(httpclient, a, a)).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(out, 2 * a)
        assert wait_for(lambda: first.model_stats("add_sub")["model_stats"][0]["inference_count"] == 1, timeout=5)


def test_explicit_mode_loads_and_unloads_through_the_api(example_repo, backend):
    with start_server(example_repo, model_control_mode="explicit") as server:
        assert server.is_ready()
        assert not server.model_ready("add_sub")
        assert [m["name"] for m in server.repository_index()] == ["add_sub"]
        server.load_model("add_sub")
        assert server.model_ready("add_sub")
        loaded = server.model_config("add_sub")
        assert loaded["max_batch_size"] == 8 and "dynamic_batching" in loaded
        index = {m["name"]: m for m in server.repository_index()}
        assert index["add_sub"]["state"] == "READY"
        server.unload_model("add_sub")
        assert not server.model_ready("add_sub")
        assert {m["name"]: m for m in server.repository_index()}["add_sub"]["state"] == "UNAVAILABLE"


def test_explicit_mode_loads_named_models_at_start(example_repo, backend):
    shutil.copytree(example_repo / "add_sub", example_repo / "other")
    config = example_repo / "other" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "add_sub"', 'name: "other"'))
    with start_server(example_repo, model_control_mode="explicit", models=["other"]) as server:
        assert server.model_ready("other") and not server.model_ready("add_sub")


def test_explicit_load_of_a_broken_model_quotes_triton(example_repo, backend):
    add_broken_model(example_repo)
    with start_server(example_repo, model_control_mode="explicit") as server:
        with pytest.raises(ModelLoadError) as caught:
            server.load_model("broken")
        assert "weights file missing: /models/broken/weights.bin" in caught.value.reasons["broken"]
        with pytest.raises(ModelLoadError, match="there is no folder"):
            server.load_model("does_not_exist")
        server.load_model("add_sub")  # the server is still fine
        assert server.model_ready("add_sub")


def test_api_load_needs_explicit_mode(server):
    with pytest.raises(TritonLabError, match="model-control-mode=none"):
        server.load_model("add_sub")


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_broken_model_at_start_raises_with_tritons_reason(example_repo, mode, backend):
    add_broken_model(example_repo)
    with pytest.raises(ModelLoadError) as caught:
        start_server(example_repo, model_control_mode=mode)
    error = caught.value
    assert list(error.reasons) == ["broken"]
    assert "FileNotFoundError: weights file missing: /models/broken/weights.bin" in error.reasons["broken"]
    assert "broken" in str(error) and error.log_path and Path(error.log_path).is_file()


def test_unparseable_config_names_file_line_and_column(example_repo, backend):
    config = example_repo / "add_sub" / "config.pbtxt"
    config.write_text(
        config.read_text().replace('dims: [ 4 ] },\n  { name: "INPUT1"', 'dims: [ 4 },\n  { name: "INPUT1"')
    )
    with pytest.raises(ModelLoadError) as caught:
        start_server(example_repo)
    reason = caught.value.reasons["add_sub"]
    assert str(config) in reason
    assert "Expected" in reason and ":" in reason.split("ModelConfig:")[1]


def test_poll_mode_picks_up_a_new_model(example_repo, backend):
    with start_server(example_repo, model_control_mode="poll", poll_interval=1) as server:
        assert not server.model_ready("added")
        staging = example_repo.parent / "added"
        shutil.copytree(example_repo / "add_sub", staging)
        config = staging / "config.pbtxt"
        config.write_text(config.read_text().replace('name: "add_sub"', 'name: "added"'))
        staging.rename(example_repo / "added")  # appear at once, fully written
        assert wait_for(lambda: server.model_ready("added"), timeout=30)


def test_requested_port_in_use_is_a_clear_error(backend):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(PortInUseError) as caught:
            start_server(http_port=port)
        assert caught.value.port == port
        assert f"port {port}" in str(caught.value) and "Fix:" in str(caught.value)
        assert f"pid {os.getpid()} ({psutil.Process().name()})" in str(caught.value)  # names the holder
    finally:
        holder.close()


def test_requested_ports_are_used(backend):
    from tritonlab.server.ports import free_ports

    http, grpc, metrics = free_ports(3)
    with start_server(http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
        assert (server.http_port, server.grpc_port, server.metrics_port) == (http, grpc, metrics)
        assert server.is_ready()


def test_missing_repository_is_a_clear_error(tmp_path, backend):
    with pytest.raises(TritonLabError, match="does not exist"):
        start_server(tmp_path / "nope")


def test_bad_options_are_rejected_before_starting():
    with pytest.raises(TritonLabError, match="model control mode"):
        EmbeddedServer(model_control_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TritonLabError, match="only applies with model_control_mode='explicit'"):
        EmbeddedServer(models=["add_sub"])
    with pytest.raises(TritonLabError, match=r"binds 127\.0\.0\.1"):
        EmbeddedServer(extra_args=["--http-address=0.0.0.0"])


def test_extra_args_reach_triton(backend):
    with start_server(extra_args=["--metrics-config=summary_latencies=true"]) as server:
        a = np.ones((1, 4), dtype=np.float32)
        server.http_client().infer("add_sub", add_sub_inputs(httpclient, a, a))
        assert "nv_inference_request_summary_us" in server.metrics_text()


def test_numpy_2_is_refused_with_the_fix(monkeypatch):
    # numpy 2 cannot be installed beside the course's numpy<2 here, so the version lookup is what we replace.
    from tritonlab.server import embedded

    monkeypatch.setattr(embedded.importlib.metadata, "version", lambda name: "2.5.2")
    with pytest.raises(TritonLabError) as caught:
        start_server()
    assert "numpy 2.5.2" in caught.value.message and "numpy<2" in caught.value.fix


def test_a_path_without_the_system_folders_still_starts_python_models(example_repo, monkeypatch):
    # Triton starts each python backend stub through a shell: with no /bin on PATH it used to wait out the
    # whole start-up timeout without a word in its log.
    monkeypatch.setenv("PATH", "/nonexistent")
    with start_server(example_repo, backend="embedded", startup_timeout=60) as server:
        assert server.is_ready()
        a, b = np.arange(4, dtype=np.float32).reshape(1, 4), np.ones((1, 4), dtype=np.float32)
        result = server.http_client().infer("add_sub", add_sub_inputs(httpclient, a, b))
        assert np.allclose(result.as_numpy("OUTPUT0"), a + b)


SLOW_MODEL_PY = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        pb_utils.Logger.log_info("add_sub: executing a slow request")
        time.sleep(0.5)
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()),
            pb_utils.Tensor("OUTPUT1", pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()),
        ]) for r in requests]
"""


def test_stop_lets_a_request_in_flight_finish(example_repo, backend):
    # Within the docker backend's 1 s between SIGTERM and SIGKILL. (Triton's own shutdown log is no signal to stop
    # earlier: it reports 0 inferences in flight while a python model executes, the backend having released them.)
    (example_repo / "add_sub" / "1" / "model.py").write_text(SLOW_MODEL_PY)
    a = np.full((1, 4), 3, dtype=np.float32)
    answer: dict[str, object] = {}
    with start_server(example_repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))

        def infer() -> None:
            try:
                answer["result"] = client.infer("add_sub", add_sub_inputs(grpcclient, a, a), client_timeout=30)
            except Exception as e:  # the assertion below shows it
                answer["error"] = e

        request = threading.Thread(target=infer)
        request.start()
        assert wait_for(lambda: "executing a slow request" in server.logs(), timeout=10)
        server.stop()
    request.join(timeout=30)
    assert "error" not in answer, answer
    assert np.array_equal(answer["result"].as_numpy("OUTPUT0"), a)
