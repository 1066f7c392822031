"""Launch Triton on a TensorRT-LLM model repository: the command lines, and a docker-backend server that runs them.

One GPU (world size 1) is a plain ``tritonserver``. A tp x pp engine needs one MPI rank per engine rank: upstream's
``launch_triton_server.py --world_size N`` (in the TRT-LLM container at ``/app/scripts``) composes
``mpirun --allow-run-as-root -n 1 tritonserver ... : -n 1 tritonserver ...``, where rank 0 serves the whole
repository and every other rank loads only ``tensorrt_llm`` (explicit model control), each with its own python
backend shared-memory prefix. That script starts mpirun in the background and returns, so a container cannot use
it as its command; :func:`mpi_command` writes the same structure for the container to run in the foreground.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from tritonlab.engine.trtllm.engine_dir import engine_info
from tritonlab.engine.trtllm.runner import trtllm_image
from tritonlab.errors import TritonLabError
from tritonlab.server.container import DockerServer

LAUNCH_SCRIPT = PurePosixPath("/app/scripts/launch_triton_server.py")
TRTLLM_MODEL = "tensorrt_llm"
_RANK0_ONLY = ("--model-control-mode=", "--load-model=", "--repository-poll-secs=")


def launch_script_command(
    repository: str | Path,
    world_size: int,
    *,
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
    script: PurePosixPath = LAUNCH_SCRIPT,
) -> list[str]:
    """What a learner types inside the TRT-LLM container (the script backgrounds mpirun and returns)."""
    if world_size < 1:
        raise TritonLabError(f"world_size={world_size}", fix="use tp_size x pp_size of the engine (1 or more)")
    return [
        "python3",
        str(script),
        f"--world_size={world_size}",
        f"--model_repo={repository}",
        f"--grpc_port={grpc_port}",
        f"--http_port={http_port}",
        f"--metrics_port={metrics_port}",
    ]


def mpi_command(server_argv: Sequence[str], world_size: int, model: str = TRTLLM_MODEL) -> list[str]:
    """``server_argv`` (a tritonserver command for rank 0) run as ``world_size`` MPI ranks in the foreground."""
    if world_size < 1:
        raise TritonLabError(f"world_size={world_size}", fix="use tp_size x pp_size of the engine (1 or more)")
    if world_size == 1:
        return list(server_argv)
    argv = ["mpirun", "--allow-run-as-root"]
    for rank in range(world_size):
        rank_argv = list(server_argv)
        if rank > 0:
            rank_argv = [a for a in rank_argv if not a.startswith(_RANK0_ONLY)]
            rank_argv += ["--model-control-mode=explicit", f"--load-model={model}"]
        rank_argv += ["--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]
        argv += ["-n", "1", *rank_argv]
        if rank < world_size - 1:
            argv.append(":")
    return argv


class TrtllmServer(DockerServer):
    """Triton in the TensorRT-LLM container on a generated inflight_batcher_llm repository.

    The engine and tokenizer directories are mounted read-only at their host paths (the repository's configs name
    them by absolute path); ``world_size`` > 1 runs one MPI rank per engine rank.
    """

    def __init__(
        self,
        repository: str | Path,
        *,
        engine_dir: str | Path,
        tokenizer_dir: str | Path,
        world_size: int | None = None,
        image: str | None = None,
        gpus: bool | int | str | list[str] | None = "all",
        shm_size: str = "2g",
        startup_timeout: float = 600.0,
        **options: Any,
    ):
        engine_dir, tokenizer_dir = Path(engine_dir).resolve(), Path(tokenizer_dir).resolve()
        info = engine_info(engine_dir) if (engine_dir / "config.json").is_file() else None
        if world_size is None:
            world_size = info.world_size if info else 1
        elif info is not None and info.world_size != world_size:
            raise TritonLabError(
                f"world_size={world_size} but the engine in {engine_dir} has tp x pp = {info.world_size} ranks",
                fix=f"use world_size={info.world_size} (one MPI rank, and one GPU, per engine rank)",
            )
        mounts = {engine_dir: engine_dir, tokenizer_dir: tokenizer_dir}
        super().__init__(
            repository,
            image=image or trtllm_image(),
            gpus=gpus,
            shm_size=shm_size,
            startup_timeout=startup_timeout,
            mounts=mounts,
            **options,
        )
        self.world_size = world_size
        self.engine_dir, self.tokenizer_dir = engine_dir, tokenizer_dir

    def command(self) -> list[str]:
        return mpi_command(super().command(), self.world_size)


def start_trtllm_server(repository: str | Path, **options: Any) -> TrtllmServer:
    """Start :class:`TrtllmServer` and wait until Triton is ready (all four models loaded)."""
    server = TrtllmServer(repository, **options)
    server.start()
    return server
