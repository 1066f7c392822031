"""`tritonlab doctor`: is this machine ready for the course? Each check says OK, WARN or FAIL, and the fix."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from packaging.specifiers import SpecifierSet

from tritonlab.versions import manifest, pinned_requirements

Status = Literal["OK", "WARN", "FAIL"]
# Without these the course cannot run; the others degrade one lab or one backend.
ESSENTIAL = {"nvidia-pytriton", "tritonclient", "numpy", "protobuf", "psutil"}


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def check_python() -> Check:
    spec = SpecifierSet(manifest()["python"]["supported"])
    version = ".".join(map(str, sys.version_info[:3]))
    in_venv = sys.prefix != sys.base_prefix
    if version not in spec:
        return Check(
            "python",
            "FAIL",
            f"Python {version} ({sys.executable}); the course supports {spec}",
            "PYTHON=python3.11 env/setup.sh",
        )
    if not in_venv:
        return Check(
            "python",
            "WARN",
            f"Python {version} outside a virtual environment ({sys.executable})",
            "use the project's .venv (make lab does)",
        )
    return Check("python", "OK", f"Python {version} in {sys.prefix}")


def check_packages() -> Iterator[Check]:
    for requirement in pinned_requirements():
        name = requirement.name
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            status: Status = "FAIL" if name in ESSENTIAL else "WARN"
            yield Check(f"package {name}", status, f"not installed (want {requirement.specifier})", "run env/setup.sh")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            status = "FAIL" if name in ESSENTIAL else "WARN"
            fix = f"{sys.executable} -m pip install '{name}{requirement.specifier}'   (or rerun env/setup.sh)"
            yield Check(
                f"package {name}", status, f"{installed} installed, the course pins {requirement.specifier}", fix
            )
        else:
            yield Check(f"package {name}", "OK", installed)


def check_perf_analyzer() -> Check:
    binary = shutil.which("perf_analyzer", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    if binary is None:
        return Check("perf_analyzer", "WARN", "not found (the tritonclient 2.51.0 wheel ships it)", "run env/setup.sh")
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        missing = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return Check(
            "perf_analyzer",
            "WARN",
            f"{binary} does not run: {missing[0]}",
            "run env/setup.sh (it links libcudart.so.12 and libb64.so.0d for perf_analyzer)",
        )
    return Check("perf_analyzer", "OK", f"{binary} runs")


def check_gpu() -> Check:
    smi = shutil.which("nvidia-smi")
    gpus = ""
    if smi:
        proc = subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        gpus = "; ".join(line.strip() for line in proc.stdout.splitlines() if line.strip())
    try:
        import torch

        cuda = torch.cuda.is_available()
        torch_info = f"torch {torch.__version__}, CUDA {'available' if cuda else 'not available'}"
    except ImportError:
        cuda, torch_info = False, "torch not installed"
    if gpus and not cuda:
        return Check(
            "gpu",
            "WARN",
            f"GPU {gpus} but {torch_info}",
            "install a CUDA build of torch 2.13.0 in .venv to use the GPU paths (labs 3 and 5)",
        )
    if gpus:
        return Check("gpu", "OK", f"{gpus}; {torch_info}")
    return Check("gpu", "OK", f"no NVIDIA GPU: CPU paths (embedded server, KIND_CPU); {torch_info}")


def check_docker() -> Check:
    from tritonlab.container import engine

    try:
        client = engine.connect(timeout=3)
    except engine.DockerUnavailable as e:
        return Check("docker", "WARN", e.message, f"only needed for backend='docker': {e.fix}")
    try:
        version = client.version().get("Version", "?")
        tag = manifest()["docker"]["cpu_image"]
        try:
            client.images.get(tag)
            image = f"CPU image {tag} built"
        except Exception:  # docker.errors.ImageNotFound, or an engine too old to answer
            return Check("docker", "WARN", f"engine reachable (Docker {version}); CPU image {tag} not built",
                         "tritonlab image build   (no registry needed; about 90 s once)")  # fmt: skip
        return Check("docker", "OK", f"engine reachable (Docker {version}); {image}")
    finally:
        client.close()


def check_shared_memory() -> Check:
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return Check("shared memory", "WARN", "/dev/shm missing", "the python backend needs /dev/shm")
    free_mb = stat.f_bavail * stat.f_frsize / 2**20
    if free_mb < 64:
        return Check(
            "shared memory",
            "WARN",
            f"/dev/shm has {free_mb:.0f} MiB free; the python backend needs more",
            "in a container, run it with --shm-size=1g",
        )
    return Check("shared memory", "OK", f"/dev/shm {free_mb:.0f} MiB free")


def check_embedded_server() -> Check:
    from tritonlab.errors import TritonLabError
    from tritonlab.server import start_server

    started = time.monotonic()
    try:
        with start_server(startup_timeout=60) as server:
            ready_s = time.monotonic() - started
            import numpy as np
            import tritonclient.http as httpclient

            a = np.arange(4, dtype=np.float32).reshape(1, 4)
            inputs = [httpclient.InferInput(n, [1, 4], "FP32") for n in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(a)
            result = server.http_client().infer("add_sub", inputs).as_numpy("OUTPUT0")
            version = server.metadata().get("version", "?")
        if not np.allclose(result, 2 * a):
            return Check(
                "embedded server",
                "FAIL",
                f"add_sub answered {result.tolist()}, expected {(2 * a).tolist()}",
                "check numpy<2 in .venv (see package numpy above)",
            )
        want = manifest()["triton"]["server"]
        status: Status = "OK" if version == want else "WARN"
        return Check(
            "embedded server",
            status,
            f"Triton {version} ready in {ready_s:.1f} s on 127.0.0.1, add_sub answered correctly",
            "" if status == "OK" else f"the course is written for Triton {want}: rerun env/setup.sh",
        )
    except TritonLabError as e:
        return Check("embedded server", "FAIL", e.message.splitlines()[0], e.fix or "see `tritonlab logs`")
    except Exception as e:
        return Check("embedded server", "FAIL", f"{type(e).__name__}: {e}", "run env/setup.sh, then doctor again")


def run_checks(server: bool = True) -> Iterator[Check]:
    checks: list[Callable[[], Check | Iterator[Check]]] = [
        check_python,
        check_packages,
        check_perf_analyzer,
        check_gpu,
        check_docker,
        check_shared_memory,
    ]
    if server:
        checks.append(check_embedded_server)
    for check in checks:
        result = check()
        if isinstance(result, Check):
            yield result
        else:
            yield from result
