"""Run a build plan where TensorRT-LLM exists: installed here, or in the TRT-LLM container through docker-py.

``where="local"`` runs the commands with this machine's ``trtllm-build`` and a TensorRT-LLM 1.2.x checkout's
``examples/``; ``where="docker"`` runs both phases in one one-shot container (docker run, done as create + start
so a container that cannot start is removed) of the manifest's TRT-LLM image (``[trtllm] image``) with the GPUs,
the model, checkpoint and engine directories bind-mounted at the same paths, and the output streamed line by line
with the phase it belongs to. ``"auto"`` picks local when ``trtllm-build`` is on PATH, else docker. The engine
directory is validated against the plan afterwards. Without either, the error says what is needed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tritonlab import versions
from tritonlab.container import engine
from tritonlab.engine.trtllm.commands import validate_argv
from tritonlab.engine.trtllm.engine_dir import EngineInfo, check_engine_dir
from tritonlab.engine.trtllm.plan import CONTAINER_EXAMPLES, BuildPlan
from tritonlab.errors import TritonLabError
from tritonlab.server.container import ImageMissing, NoGpuRuntime
from tritonlab.server.process import die_with_parent_preexec, stop_process_tree

Where = Literal["auto", "local", "docker"]
Log = Callable[[str], None]
PHASES = ("convert", "build")
BUILD_LABEL = "org.tritonlab.trtllm-build"  # value: the pid that started the build


class TrtllmUnavailable(TritonLabError):
    """Neither a local TensorRT-LLM nor a Docker engine with GPUs and the TRT-LLM image is available."""


class BuildFailed(TritonLabError):
    """A phase of the build exited with an error."""


def trtllm_image() -> str:
    return str(versions.manifest()["trtllm"]["image"])


def trtllm_version() -> str:
    return str(versions.manifest()["trtllm"]["version"])


def local_trtllm() -> str | None:
    """Path of trtllm-build if TensorRT-LLM is installed in this environment."""
    return shutil.which("trtllm-build")


def _needed() -> str:
    return (
        f"either TensorRT-LLM {trtllm_version()} installed here (trtllm-build on PATH, plus a checkout of its "
        f"examples/), or Docker with the NVIDIA Container Toolkit and the image {trtllm_image()} "
        f"(docker pull {trtllm_image()}); both need an NVIDIA GPU"
    )


def choose(where: Where) -> Literal["local", "docker"]:
    if where == "local" and local_trtllm() is None:
        raise TrtllmUnavailable(
            "trtllm-build is not on PATH: TensorRT-LLM is not installed in this environment",
            fix=f"use where='docker', or install TensorRT-LLM {trtllm_version()}; needed: {_needed()}",
        )
    if where == "auto":
        return "local" if local_trtllm() is not None else "docker"
    return where


def run_plan(
    plan: BuildPlan,
    *,
    where: Where = "auto",
    image: str | None = None,
    gpus: str | int = "all",
    docker_host: str | None = None,
    log: Log = print,
) -> EngineInfo:
    """Convert and build ``plan``'s engine, then check the engine directory against the plan."""
    plan.check()
    for argv in plan.commands():
        report = validate_argv(argv)
        if not report.ok:  # our own argv must pass our own check of the 1.2 flags
            raise TritonLabError(
                f"tritonlab wrote an invalid command {shlex.join(argv)}: {report.errors}",
                fix="report this as a tritonlab bug",
            )
    mode = choose(where)
    if mode == "local":
        _run_local(plan, log)
    else:
        _run_docker(plan, image=image or trtllm_image(), gpus=gpus, docker_host=docker_host, log=log)
    return check_engine_dir(plan)


# ---------------------------------------------------------------------------------------------- local
def _run_local(plan: BuildPlan, log: Log) -> None:
    convert, build = plan.commands()
    script = Path(convert[1])
    if not script.is_file():
        hint = " (that is where the TRT-LLM container keeps them)" if plan.examples_dir == CONTAINER_EXAMPLES else ""
        raise TrtllmUnavailable(
            f"{script} does not exist{hint}",
            fix=f"pass examples_dir= the examples/ folder of a TensorRT-LLM {trtllm_version()} checkout "
            f"(git clone -b v{trtllm_version()} https://github.com/NVIDIA/TensorRT-LLM)",
        )
    plan.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    plan.engine_dir.mkdir(parents=True, exist_ok=True)
    for number, (phase, argv) in enumerate(zip(PHASES, (convert, build), strict=True), 1):
        log(f"[{number}/2 {phase}] {shlex.join(argv)}")
        started = time.monotonic()
        # Its own session, dying with this thread's process (a killed kernel), and stopped with everything it
        # started on an interrupt: a multi-minute GPU build must not outlive the notebook that asked for it.
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                              start_new_session=True, preexec_fn=die_with_parent_preexec()) as proc:  # fmt: skip
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log(f"[{number}/2 {phase}] {line.rstrip()}")
                code = proc.wait()
            except BaseException:
                stop_process_tree(proc.pid, None, grace=5.0)
                raise
        if code != 0:
            raise BuildFailed(f"{phase} exited with code {code}: {shlex.join(argv)}", fix=_fix_for(phase))
        log(f"[{number}/2 {phase}] done in {time.monotonic() - started:.0f} s")


def _fix_for(phase: str) -> str:
    if phase == "convert":
        return (
            "read the log above: out of memory → convert on CPU (--load_model_on_cpu) or with more tp; "
            "unsupported model → check the family's convert_checkpoint.py"
        )
    return (
        "read the log above: out of GPU memory → lower max_batch_size / max_num_tokens or raise tp; "
        "unsupported op → check the plugins and the TRT-LLM version"
    )


# ---------------------------------------------------------------------------------------------- docker
def container_script(plan: BuildPlan) -> str:
    """The bash script the one-shot container runs: both phases, each announced, stopping at the first failure."""
    lines = ["set -euo pipefail"]
    for number, (phase, argv) in enumerate(zip(PHASES, plan.commands(), strict=True), 1):
        lines.append(f"echo {shlex.quote(f'[tritonlab {number}/2 {phase}] ' + shlex.join(argv))}")
        lines.append(shlex.join(argv))
    lines.append("echo '[tritonlab done]'")
    return "\n".join(lines)


def container_mounts(plan: BuildPlan) -> dict[str, dict[str, str]]:
    """Host directories bind-mounted at the same path: the model read-only, checkpoint and engine writable."""
    mounts = {str(Path(plan.model_dir).resolve()): {"bind": str(Path(plan.model_dir).resolve()), "mode": "ro"}}
    for directory in (plan.checkpoint_dir, plan.engine_dir):
        path = str(Path(directory).resolve())
        mounts[path] = {"bind": path, "mode": "rw"}
    return mounts


def device_requests(gpus: str | int) -> list[Any]:
    import docker.types

    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        return [docker.types.DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    return [docker.types.DeviceRequest(device_ids=gpus.split(","), capabilities=[["gpu"]])]


def _run_docker(plan: BuildPlan, *, image: str, gpus: str | int, docker_host: str | None, log: Log) -> None:
    import docker.errors
    import docker.types

    try:
        client = engine.connect(docker_host)
    except engine.DockerUnavailable as e:
        raise TrtllmUnavailable(
            f"TensorRT-LLM is not installed here and Docker cannot be used: {e.message}",
            fix=f"{e.fix}. Needed: {_needed()}",
        ) from None
    try:
        _ensure_image(client, image)
        for directory in (plan.checkpoint_dir, plan.engine_dir):
            Path(directory).mkdir(parents=True, exist_ok=True)
        name = f"tritonlab-trtllm-build-{os.getpid()}-{int(time.time())}"
        try:
            # create + start (docker run, split) so that a container that fails to start is removed below
            container = client.containers.create(
                image,
                ["bash", "-c", container_script(plan)],
                detach=True,
                device_requests=device_requests(gpus),
                volumes=container_mounts(plan),
                shm_size="2g",
                ulimits=[
                    docker.types.Ulimit(name="memlock", soft=-1, hard=-1),
                    docker.types.Ulimit(name="stack", soft=67108864, hard=67108864),
                ],
                labels={BUILD_LABEL: str(os.getpid())},  # not a server: `tritonlab down` leaves builds alone
                name=name,
            )
        except docker.errors.APIError as e:
            raise _start_error(e, gpus, docker_host or engine.docker_host()) from None
        try:
            container.start()
        except docker.errors.APIError as e:
            engine.remove(container, grace=0)
            raise _start_error(e, gpus, docker_host or engine.docker_host()) from None
        try:
            _stream(container, log)
            code = int(container.wait().get("StatusCode", -1))
        finally:
            engine.remove(container, grace=2)
        if code != 0:
            raise BuildFailed(
                f"the build container exited with code {code} (its output is above)",
                fix="read the phase that failed; " + _fix_for("build"),
            )
    finally:
        client.close()


def _ensure_image(client: Any, image: str) -> None:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ImageMissing(
            f"the TensorRT-LLM image {image} is not in the Docker engine",
            fix=f"docker pull {image} (about 30 GB; NGC may need `docker login nvcr.io`)",
        ) from None


def _start_error(error: Exception, gpus: str | int, host: str) -> TritonLabError:
    text = str(error)
    if engine.lacks_gpu_runtime(error):
        return NoGpuRuntime(
            f"the build needs GPUs (gpus={gpus!r}) but the Docker engine at {host} has no NVIDIA runtime: "
            f"{text.splitlines()[0][:300] if text else type(error).__name__}",
            fix=f"{engine.NVIDIA_TOOLKIT_FIX}; TensorRT-LLM engines can only be built on an NVIDIA GPU. "
            f"Needed: {_needed()}",
        )
    return TritonLabError(
        f"Docker could not start the TensorRT-LLM build container: {text[:300]}",
        fix="see the message above; `docker info` shows the engine's state",
    )


def _stream(container: Any, log: Log) -> None:
    buffer = ""
    phase = "starting"
    for chunk in container.logs(stream=True, follow=True):
        buffer += chunk.decode(errors="replace")
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            if line.startswith("[tritonlab "):
                phase = line.split("]", 1)[0].removeprefix("[tritonlab ")
                log(line)
            else:
                log(f"[{phase}] {line}")
    if buffer:
        log(f"[{phase}] {buffer}")
