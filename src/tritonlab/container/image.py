"""`tritonlab image build`: a CPU Triton image made with no registry at all.

1. base: a minimal Debian rootfs from ``debootstrap --variant=minbase`` (plus python3 and libpython, which the
   python backend stub links), imported into Docker as an image (cached by its package list);
2. wheels: the manifest's pinned wheels (nvidia-pytriton, which carries tritonserver 2.51.0, and numpy<2)
   downloaded on the host, for the image's Python — pip inside a container can fail TLS verification behind
   an intercepting proxy, the host's pip works;
3. image: a venv in the image with those wheels; the server moved to /opt/tritonserver as in NGC's images (so the
   backend and cache directories are Triton's defaults) with the stub for the image's Python in place.

The result is tagged from the manifest and labelled with a hash of everything it was made from: a rebuild with the
same inputs is a cache hit that takes about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonlab import versions
from tritonlab.container import engine
from tritonlab.errors import TritonLabError
from tritonlab.paths import cache_dir

LABEL_HASH = "org.tritonlab.content-hash"
VENV = "/opt/tritonlab"
SERVER_DIR = "/opt/tritonserver"


class ImageBuildError(TritonLabError):
    pass


@dataclass(frozen=True)
class ImageSpec:
    tag: str
    suite: str
    mirror: str
    packages: tuple[str, ...]
    python: str
    wheels: tuple[str, ...]

    @classmethod
    def from_manifest(cls, mirror: str | None = None) -> ImageSpec:
        docker = versions.manifest()["docker"]
        return cls(
            tag=docker["cpu_image"],
            suite=docker["base_suite"],
            mirror=mirror or os.environ.get("TRITONLAB_DEBIAN_MIRROR") or docker["base_mirror"],
            packages=tuple(docker["base_packages"]),
            python=docker["image_python"],
            wheels=tuple(docker["image_wheels"]),
        )

    @property
    def base_tag(self) -> str:
        # The mirror is where the packages come from, not what they are: it is not part of the key.
        key = hashlib.sha256(json.dumps([self.suite, sorted(self.packages)]).encode()).hexdigest()[:12]
        return f"tritonlab/debian-base:{self.suite}-{key}"

    def dockerfile(self, base_id: str) -> str:
        site = f"{VENV}/lib/python{self.python}/site-packages"
        return "\n".join([
            f"FROM {base_id}",
            "COPY wheels /tmp/wheels",
            f"RUN python3 -m venv {VENV} \\",
            f" && {VENV}/bin/pip install --quiet --no-index --no-deps --no-compile /tmp/wheels/*.whl \\",
            f" && mv {site}/pytriton/tritonserver {SERVER_DIR} \\",
            f" && cp {SERVER_DIR}/python_backend_stubs/{self.python}/triton_python_backend_stub"
            f" {SERVER_DIR}/backends/python/ \\",
            f" && rm -rf {SERVER_DIR}/python_backend_stubs {site}/pytriton /tmp/wheels /root/.cache \\",
            # Bytecode made once here: every container starts from the image, and a python model's stub compiled
            # numpy and the backend utils afresh on each start (~0.35 s).
            f" && {VENV}/bin/python -m compileall -q -j 0 {site} {SERVER_DIR}/backends/python \\",
            f" && ln -s {SERVER_DIR}/bin/tritonserver /usr/local/bin/tritonserver",
            # The stub finds its Python through the first python3 on PATH; the server's libraries sit in the wheel.
            f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            f" LD_LIBRARY_PATH={site}/nvidia_pytriton.libs",
            "WORKDIR /",
            'CMD ["tritonserver", "--help"]',
            "",
        ])  # fmt: skip


@dataclass
class BuildReport:
    tag: str
    image_id: str
    cached: bool
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step; a cached step is absent

    def summary(self) -> str:
        how = "cache hit" if self.cached else ", ".join(f"{k} {v:.0f} s" for k, v in self.steps.items())
        return f"{self.tag} ({self.image_id[7:19]}) in {self.seconds:.1f} s: {how}"


Say = Callable[[str], None]


def build_image(spec: ImageSpec | None = None, *, force: bool = False, say: Say = print) -> BuildReport:
    """Build (or find in the cache) the CPU Triton image; ``force`` rebuilds every step."""
    import docker.errors

    spec = spec or ImageSpec.from_manifest()
    started = time.perf_counter()
    client = engine.connect(timeout=600)
    steps: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        base = _find_image(client, spec.base_tag)
        if base is None or force:
            base = _build_base(client, spec, say)
            steps["base"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        wheels = download_wheels(spec, say)
        if any(not w.name.endswith(".whl") for w in wheels):
            raise ImageBuildError(f"not a wheel among {wheels}")
        steps_wheels = time.perf_counter() - t0
        content_hash = _content_hash(spec, base.id, wheels)
        existing = _find_image(client, spec.tag)
        if existing is not None and not force and (existing.labels or {}).get(LABEL_HASH) == content_hash:
            say(f"{spec.tag} is up to date (cache hit)")
            return BuildReport(spec.tag, existing.id, True, time.perf_counter() - started)
        steps["wheels"] = steps_wheels
        t0 = time.perf_counter()
        image_id = _build_triton_image(client, spec, base.id, wheels, content_hash, force, say)
        steps["image"] = time.perf_counter() - t0
        return BuildReport(spec.tag, image_id, False, time.perf_counter() - started, steps)
    except docker.errors.APIError as e:
        raise ImageBuildError(f"Docker refused a step of the image build: {e.explanation or e}",
                              fix="see the message; `docker info` shows the engine's state") from None  # fmt: skip
    finally:
        client.close()


def _find_image(client: Any, tag: str) -> Any:
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _build_base(client: Any, spec: ImageSpec, say: Say) -> Any:
    debootstrap = shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if Path(p).is_file()), None
    )
    if debootstrap is None:
        raise ImageBuildError("debootstrap is not installed (it makes the Debian base image without a registry)",
                              fix="sudo apt-get install debootstrap")  # fmt: skip
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap must run as root to make the base image",
                              fix="sudo -E tritonlab image build  (only the first build needs it; later ones hit "
                                  "the cache)")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="tritonlab-rootfs-", dir=_scratch_dir()))
    try:
        rootfs = work / "rootfs"
        say(f"debootstrap {spec.suite} (minbase + {', '.join(spec.packages)}) from {spec.mirror}")
        # Two stages, so that dpkg may skip its fsync per file while it installs into a rootfs that is thrown away
        # on any failure (mmdebstrap's default): 66 -> 53 s here. The setting is removed before the import.
        cmd = [debootstrap, "--foreign", "--variant=minbase", f"--include={','.join(spec.packages)}", spec.suite,
               str(rootfs), spec.mirror]  # fmt: skip
        _run_with_progress(cmd, f"debootstrap {spec.suite} (download)", expected_lines=_DEBOOTSTRAP_LINES[0])
        unsafe_io = rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "tritonlab-unsafe-io"
        unsafe_io.parent.mkdir(parents=True, exist_ok=True)
        unsafe_io.write_text("force-unsafe-io\n")
        cmd = ["chroot", str(rootfs), "/debootstrap/debootstrap", "--second-stage"]
        _run_with_progress(cmd, f"debootstrap {spec.suite} (install)", expected_lines=_DEBOOTSTRAP_LINES[1])
        unsafe_io.unlink()
        # Apt's package lists and caches are not needed in an image: smaller import, same result.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = work / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."], check=True)
        say(f"importing the rootfs as {spec.base_tag}")
        repository, tag = spec.base_tag.rsplit(":", 1)
        client.api.import_image(src=str(tar), repository=repository, tag=tag)
        return client.images.get(spec.base_tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)


_DEBOOTSTRAP_LINES = (335, 237)  # about how many lines each stage of a minbase + python3 debootstrap prints


def _run_with_progress(cmd: list[str], desc: str, expected_lines: int) -> None:
    from tqdm.auto import tqdm

    tail: list[str] = []
    with (
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc,
        tqdm(total=expected_lines, desc=desc, unit="step", leave=False) as bar,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-14:], line.rstrip()]
            bar.update(1)
        code = proc.wait()
    if code != 0:
        raise ImageBuildError(f"{' '.join(cmd[:3])} ... failed (exit {code}):\n" + "\n".join(tail),
                              fix="check the Debian mirror is reachable (TRITONLAB_DEBIAN_MIRROR or "
                                  "--mirror picks another)")  # fmt: skip


def _scratch_dir() -> str:
    # Not /tmp if it is a small tmpfs: the rootfs is about 300 MB.
    for candidate in (os.environ.get("TMPDIR"), "/var/tmp", None):
        if candidate is None or (Path(candidate).is_dir() and os.access(candidate, os.W_OK)):
            return candidate or tempfile.gettempdir()
    return tempfile.gettempdir()


def wheels_dir(spec: ImageSpec) -> Path:
    path = cache_dir() / "image-wheels" / f"py{spec.python.replace('.', '')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def download_wheels(spec: ImageSpec, say: Say = print) -> list[Path]:
    """The pinned wheels for the image's Python (Linux x86-64), downloaded once into the cache."""
    target = wheels_dir(spec)
    found = [_local_wheel(target, requirement) for requirement in spec.wheels]
    if all(found):
        return [p for p in found if p is not None]
    py = spec.python.replace(".", "")
    say(f"downloading {', '.join(spec.wheels)} for Python {spec.python} on the host")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", spec.python, "--implementation", "cp", "--abi", f"cp{py}", "--abi", "none",
           "--platform", "manylinux_2_35_x86_64", "--platform", "manylinux2014_x86_64",
           "--dest", str(target), *spec.wheels]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageBuildError(
            f"pip could not download {', '.join(spec.wheels)}:\n{result.stderr.strip()[-1500:]}",
            fix=f"check that PyPI (or your index) is reachable, or put the wheels into {target} by hand",
        )
    found = [_local_wheel(target, requirement) for requirement in spec.wheels]
    missing = [r for r, p in zip(spec.wheels, found, strict=True) if p is None]
    if missing:
        raise ImageBuildError(f"pip ran but left no wheel for {', '.join(missing)} in {target}",
                              fix="pin versions that publish Linux x86-64 wheels for this Python")  # fmt: skip
    return [p for p in found if p is not None]


def _local_wheel(directory: Path, requirement: str) -> Path | None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    req = Requirement(requirement)
    for wheel in sorted(directory.glob("*.whl")):
        try:
            name, version, _, _ = parse_wheel_filename(wheel.name)
        except ValueError:
            continue
        if canonicalize_name(name) == canonicalize_name(req.name) and req.specifier.contains(version, prereleases=True):
            return wheel
    return None


def _content_hash(spec: ImageSpec, base_id: str, wheels: list[Path]) -> str:
    digest = hashlib.sha256()
    digest.update(spec.dockerfile(base_id).encode())
    for wheel in wheels:
        digest.update(wheel.name.encode())
        digest.update(hashlib.sha256(wheel.read_bytes()).digest())
    return digest.hexdigest()


def _build_triton_image(
    client: Any, spec: ImageSpec, base_id: str, wheels: list[Path], content_hash: str, force: bool, say: Say
) -> str:
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="tritonlab-image-", dir=_scratch_dir()) as context:
        (Path(context) / "wheels").mkdir()
        for wheel in wheels:
            _link_or_copy(wheel, Path(context) / "wheels" / wheel.name)
        (Path(context) / "Dockerfile").write_text(spec.dockerfile(base_id))
        say(f"building {spec.tag}")
        image_id = ""
        log: list[str] = []
        labels = {LABEL_HASH: content_hash, "org.tritonlab.triton": versions.triton_server_version()}
        stream = client.api.build(path=context, tag=spec.tag, rm=True, forcerm=True, nocache=force, decode=True,
                                  labels=labels)  # fmt: skip
        with tqdm(desc=f"docker build {spec.tag}", unit="step", leave=False) as bar:
            for event in stream:
                if "error" in event:
                    raise ImageBuildError(
                        f"docker build of {spec.tag} failed: {event['error'].strip()}\n" + "".join(log[-20:]),
                        fix="read the build output above",
                    )
                if text := event.get("stream"):
                    log.append(text)
                    if text.startswith("Step "):
                        bar.update(1)
                if aux := event.get("aux"):
                    image_id = aux.get("ID", image_id)
    if not image_id:
        image_id = client.images.get(spec.tag).id
    return image_id


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def image_status(spec: ImageSpec | None = None) -> dict[str, Any]:
    """What the engine holds of the image: tag, id, size, content hash, base."""
    spec = spec or ImageSpec.from_manifest()
    client = engine.connect(timeout=30)
    try:
        image = _find_image(client, spec.tag)
        base = _find_image(client, spec.base_tag)
        return {
            "tag": spec.tag,
            "present": image is not None,
            "id": image.id if image else None,
            "size_mb": round(image.attrs.get("Size", 0) / 1e6) if image else None,
            "content_hash": (image.labels or {}).get(LABEL_HASH) if image else None,
            "base": spec.base_tag,
            "base_present": base is not None,
        }
    finally:
        client.close()
