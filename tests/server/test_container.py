"""The docker backend's own behaviour against a real Docker engine: labels, read-only repository, a dead owner's
container removed, `tritonlab up/status/down` with containers, and every error a learner can meet, with its fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO_ROOT, VENV_BIN, wait_for
from tritonlab.container import engine
from tritonlab.errors import TritonLabError
from tritonlab.server import DockerServer, registry, start_server
from tritonlab.server.container import ImageMissing, NoGpuRuntime

pytestmark = pytest.mark.usefixtures("cpu_image", "no_leaked_containers")


def container_of(server: DockerServer):
    return engine.connect().containers.get(server.container_id)


def test_container_is_labelled_mounts_the_repository_read_only_and_publishes_on_loopback(example_repo):
    with start_server(example_repo, backend="docker") as server:
        attrs = container_of(server).attrs
        labels = attrs["Config"]["Labels"]
        assert labels[engine.LABEL] == "1" and labels[engine.LABEL_OWNER_PID] == str(os.getpid())
        mounts = {m["Destination"]: m for m in attrs["Mounts"]}
        assert mounts[str(example_repo)]["RW"] is False and mounts[str(example_repo)]["Source"] == str(example_repo)
        bindings = attrs["HostConfig"]["PortBindings"]
        assert {b["HostIp"] for port in bindings.values() for b in port} == {"127.0.0.1"}
        assert attrs["HostConfig"]["ShmSize"] == 1024**3
        # The server cannot write into the learner's repository.
        result = container_of(server).exec_run(["sh", "-c", f"touch {example_repo}/x"])
        assert result.exit_code != 0 and b"Read-only file system" in result.output


def test_owner_killed_with_sigkill_its_container_is_removed_by_the_reaper(example_repo):
    script = textwrap.dedent(f"""
        import json, sys, time
        from tritonlab.server import start_server
        server = start_server({str(example_repo)!r}, backend="docker")
        print(json.dumps({{"container": server.container_id}}), flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        container_id = json.loads(owner.stdout.readline())["container"]
        assert engine.container_exists(container_id)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        assert wait_for(lambda: engine.container_exists(container_id) is False, timeout=20)
    finally:
        owner.kill()
        owner.wait()


def test_up_detach_status_down_with_the_docker_backend(example_repo):
    up = subprocess.run([str(VENV_BIN / "tritonlab"), "up", "--backend", "docker", "--repo", str(example_repo),
                         "--detach", "--json"], capture_output=True, text=True, timeout=180)  # fmt: skip
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["backend"] == "docker" and engine.container_exists(info["container"])
    status = json.loads(subprocess.run([str(VENV_BIN / "tritonlab"), "status", "--json"], capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    assert [s["backend"] for s in status if s["http_url"] == info["http_url"]] == ["docker"]
    down = subprocess.run([str(VENV_BIN / "tritonlab"), "down", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(down.stdout)["stopped"]
    assert engine.container_exists(info["container"]) is False


def test_down_all_removes_an_unregistered_container(example_repo):
    server = start_server(example_repo, backend="docker")
    server._unregister()  # as if its registry entry were lost
    server._reaper.kill()  # and its reaper gone
    assert [c.id for c in registry.stray_containers()] == [server.container_id]
    down = subprocess.run([str(VENV_BIN / "tritonlab"), "down", "--all", "--json"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert json.loads(down.stdout)["strays"] == 1
    assert engine.container_exists(server.container_id) is False
    server.stop()  # already gone: stop must not fail


def test_down_removes_a_container_whose_owner_died_before_its_reaper_took_over(example_repo):
    script = textwrap.dedent(f"""
        import json, sys, time
        from tritonlab.server import start_server
        server = start_server({str(example_repo)!r}, backend="docker")
        server._reaper.kill()  # as if the owner died before its reaper ran
        server._unregister()  # and before its registry entry was written
        print(json.dumps({{"container": server.container_id}}), flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        container_id = json.loads(owner.stdout.readline())["container"]
        alive = subprocess.run([str(VENV_BIN / "tritonlab"), "down", "--json"], capture_output=True, text=True,
                               check=True)  # fmt: skip
        assert json.loads(alive.stdout)["strays"] == 0 and engine.container_exists(container_id)  # owner lives
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        down = subprocess.run([str(VENV_BIN / "tritonlab"), "down", "--json"], capture_output=True, text=True,
                              check=True)  # fmt: skip
        assert json.loads(down.stdout)["strays"] == 1
        assert engine.container_exists(container_id) is False
    finally:
        owner.kill()
        owner.wait()


def test_a_server_removed_behind_its_back_is_reported_not_hung(example_repo):
    with start_server(example_repo, backend="docker") as server:
        container_of(server).remove(force=True)
        assert not server.running
    assert not server.is_live()


def test_local_image_missing_says_to_build_it(monkeypatch):
    from tritonlab import versions

    monkeypatch.setitem(versions.manifest()["docker"], "cpu_image", "tritonlab/not-built:0")
    with pytest.raises(ImageMissing) as caught:
        start_server(backend="docker")
    assert "tritonlab/not-built:0" in caught.value.message and "tritonlab image build" in caught.value.fix


def test_registry_image_missing_and_unpullable_says_how_to_pull_or_build():
    with pytest.raises(ImageMissing) as caught:
        start_server(backend="docker", image="127.0.0.1:9/nowhere/tritonserver:24.10-py3")
    assert "pulling it failed" in caught.value.message
    assert "docker pull 127.0.0.1:9/nowhere/tritonserver:24.10-py3" in caught.value.fix
    assert "tritonlab image build" in caught.value.fix


def test_gpus_without_an_nvidia_runtime_is_a_clear_error(cpu_image):
    with pytest.raises(NoGpuRuntime) as caught:
        start_server(backend="docker", image=cpu_image, gpus="all")
    assert "NVIDIA" in caught.value.message and "nvidia-ctk" in caught.value.fix


def test_unreachable_engine_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(engine.DockerUnavailable) as caught:
        start_server(backend="docker")
    assert "not reachable" in caught.value.message and "systemctl start docker" in caught.value.fix


PERMISSION_PROBE = """
from tritonlab.container import engine
try:
    engine.connect()
except engine.DockerUnavailable as e:
    print(e.message)
    print(e.fix)
"""


def test_permission_denied_on_the_socket_is_a_clear_error(docker_engine):
    # A real permission error: the engine's socket is root's; ask it as user nobody.
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    result = subprocess.run([*as_nobody, sys.executable, "-c", PERMISSION_PROBE], capture_output=True, text=True,
                            env={**os.environ, "DOCKER_HOST": docker_engine})  # fmt: skip
    assert "permission denied" in result.stdout and "usermod -aG docker" in result.stdout, result.stdout + result.stderr


def test_docker_only_options_are_refused_for_other_backends():
    result = subprocess.run([str(VENV_BIN / "tritonlab"), "up", "--gpus", "all"], capture_output=True, text=True,
                            env={**os.environ, "TRITONLAB_BACKEND": "embedded"})  # fmt: skip
    assert result.returncode == 1 and "--backend docker" in result.stderr + result.stdout


def test_logs_available_during_and_after_the_run(example_repo):
    with start_server(example_repo, backend="docker") as server:
        assert "Started GRPCInferenceService" in server.logs()
        assert server.logs(tail=1).count("\n") == 0
        log_file = Path(server.log_path)
        assert log_file.is_file()  # named and there from the start
        copied = wait_for(lambda: "Started GRPCInferenceService" in log_file.read_text(), timeout=30)  # the reaper's
        assert copied, f"reaper exit code {server._reaper.poll()}, log file: {log_file.read_text()[-500:]!r}"
    shutdown = "in-flight non-inference requests"  # what Triton logs once SIGTERM has reached it
    assert shutdown in log_file.read_text()  # the lines up to the stop are kept
    assert shutdown in server.logs()  # and still readable through the server object


def test_bad_gpus_value_is_an_error_before_docker_is_asked():
    with pytest.raises(TritonLabError):
        DockerServer(gpus=-3).start()


@pytest.mark.parametrize(
    ("gpus", "count", "ids"), [("all", -1, None), (True, -1, None), (2, 2, None), ("0,1", None, ["0", "1"])]
)
def test_gpu_selection_becomes_the_engines_device_request(gpus, count, ids):
    # The request docker-py sends (the engine here has no NVIDIA runtime to honour it: see the test above).
    (request,) = DockerServer(gpus=gpus)._device_requests()
    assert request["Capabilities"] == [["gpu"]]
    assert request.get("Count") == count if count is not None else request["DeviceIDs"] == ids


def test_the_docker_benchmark_runs_at_a_tiny_size(docker_engine, tmp_path):
    """bench/docker_backend.py cannot rot: one start of each backend, the cached image, results written."""
    out = tmp_path / "docker.json"
    result = subprocess.run([sys.executable, "bench/docker_backend.py", "--starts", "1", "--no-cold-build", "--out",
                             str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["docker_ready"]["n"] == 1 and 0 < figures["docker_ready"]["median_s"] < 60
    assert figures["embedded_ready"]["n"] == 1 and figures["image_build"] == {}
