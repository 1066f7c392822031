"""Where a plan can run, and the errors when it cannot; the launch command lines and the TRT-LLM server object.

TensorRT-LLM is not installed here and the Docker engine on these machines has no NVIDIA runtime: no test runs
trtllm-build or Triton with the tensorrtllm backend. The local-runner test uses stand-in scripts (named as such)
to exercise the runner's own plumbing: phases, streaming, exit codes, the engine check afterwards.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import docker.errors
import pytest
from trtllm_shapes import engine_config, write_engine_dir

from tritonlab import versions
from tritonlab.container import engine
from tritonlab.engine.trtllm import (
    BuildFailed,
    BuildPlan,
    TrtllmServer,
    TrtllmUnavailable,
    launch_script_command,
    mpi_command,
    run_plan,
    runner,
)
from tritonlab.errors import TritonLabError
from tritonlab.server.container import NoGpuRuntime

TRTLLM_IMAGE = versions.manifest()["trtllm"]["image"]


def plan(tmp_path: Path, **kw) -> BuildPlan:
    return BuildPlan(model_dir=tmp_path / "hf", checkpoint_dir=tmp_path / "ckpt", engine_dir=tmp_path / "engine", **kw)


@pytest.fixture
def no_trtllm(tmp_path, monkeypatch):
    """PATH without trtllm-build (it is not installed on these machines anyway)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert runner.local_trtllm() is None


def test_local_without_trtllm_build_says_what_is_needed(tmp_path, no_trtllm):
    with pytest.raises(TrtllmUnavailable) as info:
        run_plan(plan(tmp_path), where="local")
    assert "trtllm-build is not on PATH" in info.value.message
    assert "TensorRT-LLM 1.2.1" in info.value.fix and TRTLLM_IMAGE in info.value.fix


def test_auto_without_trtllm_and_without_docker_says_what_is_needed(tmp_path, no_trtllm, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-such.sock'}")
    with pytest.raises(TrtllmUnavailable) as info:
        run_plan(plan(tmp_path))  # auto -> docker, and docker-py really fails to connect
    assert "Docker cannot be used" in info.value.message and "not reachable" in info.value.message
    assert f"docker pull {TRTLLM_IMAGE}" in info.value.fix
    assert "NVIDIA Container Toolkit" in info.value.fix


def test_an_inconsistent_plan_is_refused_before_anything_runs(tmp_path, no_trtllm):
    from tritonlab.engine.trtllm import BuildLimits, PlanError

    with pytest.raises(PlanError):
        run_plan(plan(tmp_path, limits=BuildLimits(max_input_len=4096, max_seq_len=1024)), where="docker")
    assert not (tmp_path / "engine").exists()


def test_dockerds_no_gpu_runtime_message_becomes_a_clear_error():
    # the message dockerd 20.10 (Debian docker.io) gives when GPUs are requested without the NVIDIA runtime
    error = docker.errors.APIError('500 Server Error: Internal Server Error ("could not select device driver "" '
                                   'with capabilities: [[gpu]]")')  # fmt: skip
    mapped = runner._start_error(error, "all", "unix:///var/run/docker.sock")
    assert isinstance(mapped, NoGpuRuntime)
    assert "no NVIDIA runtime" in mapped.message and "could not select device driver" in mapped.message
    assert "Docker engine at unix:///var/run/docker.sock" in mapped.message
    assert "nvidia-ctk runtime configure" in mapped.fix
    other = runner._start_error(docker.errors.APIError("conflict: name in use"), "all", "unix:///x")
    assert type(other) is TritonLabError and "could not start" in other.message


def test_a_real_docker_engine_without_nvidia_runtime_refuses_the_gpu_build(tmp_path, docker_engine, cpu_image):
    """The real engine of the test session (no NVIDIA runtime here) refuses the GPU container; it is removed."""
    client = engine.connect(docker_engine)
    try:
        info = client.info()
        before = {c.id for c in client.containers.list(all=True, filters={"label": runner.BUILD_LABEL})}
    finally:
        client.close()
    if "nvidia" in (info.get("Runtimes") or {}):
        pytest.skip("this Docker engine has the NVIDIA runtime: the no-GPU-runtime error cannot happen")
    (tmp_path / "hf").mkdir()
    with pytest.raises(NoGpuRuntime) as raised:
        run_plan(plan(tmp_path), where="docker", image=cpu_image, docker_host=docker_engine, log=lambda _: None)
    assert "no NVIDIA runtime" in raised.value.message and f"Docker engine at {docker_engine}" in raised.value.message
    client = engine.connect(docker_engine)
    try:
        after = {c.id for c in client.containers.list(all=True, filters={"label": runner.BUILD_LABEL})}
        assert after == before  # the container that could not start was removed
    finally:
        client.close()


def _stand_in(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


STAND_IN_BUILD = """import json, pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--output_dir") + 1])
print("stand-in trtllm-build (not TensorRT-LLM): writing", out, flush=True)
config = json.loads(pathlib.Path(__file__).with_name("engine_config.json").read_text())
out.mkdir(parents=True, exist_ok=True)
(out / "config.json").write_text(json.dumps(config))
tp = config["pretrained_config"]["mapping"]["tp_size"]
for rank in range(tp):
    (out / f"rank{rank}.engine").write_bytes(b"")
sys.exit(int(__import__("os").environ.get("STAND_IN_EXIT", "0")))
"""


def test_local_runner_plumbing_with_stand_in_scripts_not_tensorrt_llm(tmp_path, monkeypatch):
    bin_dir, examples = tmp_path / "bin", tmp_path / "examples"
    _stand_in(bin_dir / "trtllm-build", STAND_IN_BUILD)
    (bin_dir / "engine_config.json").write_text(json.dumps(engine_config(tp=2)))
    _stand_in(examples / "models/core/llama/convert_checkpoint.py", "print('stand-in convert (not TensorRT-LLM)')\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    lines: list[str] = []
    info = run_plan(plan(tmp_path, tp_size=2, examples_dir=examples), where="auto", log=lines.append)
    assert info.world_size == 2 and info.rank_files == ("rank0.engine", "rank1.engine")
    assert any(line.startswith("[1/2 convert] python3 ") for line in lines)
    assert "[1/2 convert] stand-in convert (not TensorRT-LLM)" in lines
    assert any(line.startswith("[2/2 build] stand-in trtllm-build") for line in lines)
    monkeypatch.setenv("STAND_IN_EXIT", "3")
    with pytest.raises(BuildFailed, match="build exited with code 3"):
        run_plan(plan(tmp_path, tp_size=2, examples_dir=examples), where="local", log=lines.append)


def test_local_runner_without_the_examples_checkout_says_where_to_get_it(tmp_path, monkeypatch):
    _stand_in(tmp_path / "bin" / "trtllm-build", "")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(TrtllmUnavailable) as info:
        run_plan(plan(tmp_path), where="local")
    assert "/app/examples/models/core/llama/convert_checkpoint.py does not exist" in info.value.message
    assert "git clone -b v1.2.1" in info.value.fix


def test_container_script_runs_both_phases_and_stops_at_the_first_failure(tmp_path):
    p = plan(tmp_path, tp_size=2)
    script = runner.container_script(p)
    lines = script.splitlines()
    assert lines[0] == "set -euo pipefail"
    assert lines[2].startswith("python3 /app/examples/models/core/llama/convert_checkpoint.py ")
    assert lines[4].startswith("trtllm-build --checkpoint_dir ")
    assert "[tritonlab 1/2 convert]" in lines[1] and "[tritonlab 2/2 build]" in lines[3]
    mounts = runner.container_mounts(p)
    assert mounts[str((tmp_path / "hf").resolve())]["mode"] == "ro"
    assert mounts[str((tmp_path / "engine").resolve())] == {"bind": str((tmp_path / "engine").resolve()), "mode": "rw"}
    requests = runner.device_requests("all")
    assert requests[0]["Count"] == -1 and requests[0]["Capabilities"] == [["gpu"]]


def test_streamed_container_output_is_tagged_with_its_phase():
    class Logs:
        def logs(self, stream, follow):
            yield b"[tritonlab 1/2 convert] python3 convert.py\nloading wei"
            yield b"ghts\n[tritonlab 2/2 build] trtllm-build\n[TRT] building\npartial"

    lines: list[str] = []
    runner._stream(Logs(), lines.append)
    assert lines == [
        "[tritonlab 1/2 convert] python3 convert.py",
        "[1/2 convert] loading weights",
        "[tritonlab 2/2 build] trtllm-build",
        "[2/2 build] [TRT] building",
        "[2/2 build] partial",
    ]


# ---------------------------------------------------------------------------------------------- launching
def test_mpi_command_gives_rank_zero_the_repository_and_the_others_only_tensorrt_llm():
    server = ["tritonserver", "--model-repository=/repo", "--http-port=8000", "--model-control-mode=none"]
    argv = mpi_command(server, 2)
    assert argv[:2] == ["mpirun", "--allow-run-as-root"]
    ranks = " ".join(argv[2:]).split(" : ")
    assert len(ranks) == 2
    assert ranks[0].startswith("-n 1 tritonserver --model-repository=/repo")
    assert "--model-control-mode=none" in ranks[0] and "shm-region-prefix-name=prefix0_" in ranks[0]
    assert "--model-control-mode=explicit --load-model=tensorrt_llm" in ranks[1]
    assert "--model-control-mode=none" not in ranks[1] and "shm-region-prefix-name=prefix1_" in ranks[1]
    assert mpi_command(server, 1) == server
    with pytest.raises(TritonLabError):
        mpi_command(server, 0)


def test_launch_script_command_is_what_a_learner_types_in_the_container():
    assert launch_script_command("/models/repo", 4) == [
        "python3", "/app/scripts/launch_triton_server.py", "--world_size=4", "--model_repo=/models/repo",
        "--grpc_port=8001", "--http_port=8000", "--metrics_port=8002",
    ]  # fmt: skip


def test_trtllm_server_takes_world_size_from_the_engine_on_a_directory_shaped_like_trtllm_build_output(tmp_path):
    engine_dir = write_engine_dir(tmp_path / "engine", tp=2)
    (tmp_path / "repo").mkdir()
    (tmp_path / "tok").mkdir()
    server = TrtllmServer(tmp_path / "repo", engine_dir=engine_dir, tokenizer_dir=tmp_path / "tok")
    assert server.world_size == 2
    assert server.image == TRTLLM_IMAGE and server.gpus == "all"
    assert server.mounts == {str(engine_dir.resolve()): str(engine_dir.resolve()),
                             str((tmp_path / "tok").resolve()): str((tmp_path / "tok").resolve())}  # fmt: skip
    command = server.command()
    assert command[0] == "mpirun" and command.count("tritonserver") == 2
    assert f"--model-repository={(tmp_path / 'repo').resolve()}" in command
    with pytest.raises(TritonLabError, match="tp x pp = 2 ranks"):
        TrtllmServer(tmp_path / "repo", engine_dir=engine_dir, tokenizer_dir=tmp_path / "tok", world_size=1)


def test_trtllm_server_with_one_rank_runs_plain_tritonserver(tmp_path):
    (tmp_path / "repo").mkdir()
    server = TrtllmServer(tmp_path / "repo", engine_dir=tmp_path / "not-built-yet", tokenizer_dir=tmp_path)
    assert server.world_size == 1
    assert server.command()[0] == "tritonserver"
