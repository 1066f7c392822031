"""Stage the tritonserver shipped in the nvidia-pytriton wheel into a writable cache dir.

The wheel carries a complete Triton 2.51.0 (binary, python backend, local cache) plus one python backend
stub per Python version. The python backend expects its stub at ``backends/python/triton_python_backend_stub``,
so we copy the tree once (hard links where possible) and put the stub for the running interpreter there.
Site-packages stays untouched.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tritonlab.diskspace import clear_when_full
from tritonlab.errors import EnvironmentProblem
from tritonlab.paths import cache_dir

STUB_NAME = "triton_python_backend_stub"
_READY_MARKER = ".tritonlab-staged"


@dataclass(frozen=True)
class WheelServer:
    """The server as the wheel installed it."""

    root: Path  # site-packages/pytriton/tritonserver
    libs: Path  # site-packages/nvidia_pytriton.libs
    version: str  # nvidia-pytriton distribution version

    def stub_for(self, python: tuple[int, int]) -> Path:
        return self.root / "python_backend_stubs" / f"{python[0]}.{python[1]}" / STUB_NAME


@dataclass(frozen=True)
class StagedServer:
    root: Path
    libs: Path

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.root / "backends"

    @property
    def caches(self) -> Path:
        return self.root / "caches"

    @property
    def stub(self) -> Path:
        return self.backends / "python" / STUB_NAME

    def complete(self) -> bool:
        """Staged whole, and nothing it needs removed since (a cache cleaned by hand, a disk error)."""
        return all(p.is_file() for p in (self.root / _READY_MARKER, self.binary, self.stub))


def find_wheel_server() -> WheelServer:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            f"the nvidia-pytriton wheel (which ships tritonserver) is not installed in this Python ({sys.executable})",
            fix="run `make lab` or `env/setup.sh`, and use the .venv it creates as your kernel",
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    root = package_dir / "tritonserver"
    libs = package_dir.parent / "nvidia_pytriton.libs"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise EnvironmentProblem(
            f"nvidia-pytriton is installed but {binary} is missing (a wheel for another platform?)",
            fix="reinstall it: .venv/bin/pip install --force-reinstall nvidia-pytriton==0.7.0",
        )
    return WheelServer(root=root, libs=libs, version=importlib.metadata.version("nvidia-pytriton"))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage(python: tuple[int, int] | None = None) -> StagedServer:
    """Return the staged server for this Python, staging it first if needed (safe to call concurrently)."""
    python = python or (sys.version_info.major, sys.version_info.minor)
    wheel = find_wheel_server()
    stub = wheel.stub_for(python)
    if not stub.is_file():
        available = sorted(p.name for p in (wheel.root / "python_backend_stubs").iterdir())
        raise EnvironmentProblem(
            f"nvidia-pytriton {wheel.version} has no python backend stub for Python {python[0]}.{python[1]} "
            f"(it has: {', '.join(available)})",
            fix="build the venv with a supported Python: PYTHON=python3.11 env/setup.sh",
        )
    target = cache_dir() / "tritonserver" / f"pytriton-{wheel.version}-py{python[0]}{python[1]}"
    staged = StagedServer(root=target, libs=wheel.libs)
    if staged.complete():
        return staged
    if target.exists():  # damaged: every start would fail (e.g. "triton_python_backend_stub is not found")
        aside = target.with_name(f".damaged-{target.name}-{os.getpid()}")
        with contextlib.suppress(OSError):  # another Python may be moving it aside or restaging at the same time
            os.rename(target, aside)
        shutil.rmtree(aside, ignore_errors=True)

    # A full disk fails the copy with one error per file: say it once, with the fix (the half copy is removed).
    with clear_when_full(target.parent, "the staged tritonserver (a copy of the wheel's server)"):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            shutil.copytree(
                wheel.root,
                tmp / "root",
                copy_function=_link_or_copy,
                ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"),
            )
            stub_dst = tmp / "root" / "backends" / "python" / STUB_NAME
            shutil.copy2(stub, stub_dst)  # a real copy: chmod below must not touch the wheel's file
            stub_dst.chmod(0o755)
            (tmp / "root" / "bin" / "tritonserver").chmod(0o755)
            (tmp / "root" / _READY_MARKER).write_text(f"{wheel.root}\n")
            try:
                os.rename(tmp / "root", target)
            except OSError:
                # Another process staged it first; theirs is as good as ours.
                if not staged.complete():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return staged


def staged_root_dir() -> Path:
    """Parent of every staged server: processes whose binary lives here are ours."""
    return cache_dir() / "tritonserver"


if __name__ == "__main__":
    s = stage()
    print(f"staged tritonserver at {s.root}")
