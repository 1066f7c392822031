"""Shared fixtures: an isolated tritonlab cache, real servers, and a guard that no tritonserver leaks."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


_OWN_PID_NAMESPACE = os.readlink("/proc/self/ns/pid") if os.path.exists("/proc/self/ns/pid") else None


def tritonserver_pids() -> set[int]:
    """tritonserver processes of this machine's pid namespace (a container's servers are counted by the docker
    tests through their labels, not here) whose binary was staged by this test session (another pytest
    running on the same machine stages into its own temp dir, so the two do not see each other's servers)."""
    session_root = os.environ.get("TRITONLAB_TEST_ROOT", "")
    pids = set()
    for proc in psutil.process_iter(["name", "exe"]):
        if proc.info["name"] != "tritonserver":
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if _OWN_PID_NAMESPACE and os.readlink(f"/proc/{proc.pid}/ns/pid") != _OWN_PID_NAMESPACE:
                continue
        except (psutil.Error, OSError):
            continue
        if session_root and not (proc.info.get("exe") or "").startswith(session_root):
            continue
        pids.add(proc.pid)
    return pids


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Staged server, registry and logs in a temp dir, never the user's cache."""
    cache = tmp_path_factory.mktemp("tritonlab-cache")
    old = os.environ.get("TRITONLAB_CACHE_DIR")
    os.environ["TRITONLAB_CACHE_DIR"] = str(cache)
    os.environ["TRITONLAB_TEST_ROOT"] = str(tmp_path_factory.getbasetemp())
    yield cache
    if old is None:
        os.environ.pop("TRITONLAB_CACHE_DIR", None)
    else:
        os.environ["TRITONLAB_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def no_leaked_servers() -> Iterator[None]:
    """Every test must leave no tritonserver behind that it started."""
    before = tritonserver_pids()
    yield
    leaked = lambda: tritonserver_pids() - before  # noqa: E731
    assert wait_for(lambda: not leaked(), timeout=20), f"tritonserver processes leaked: {leaked()}"


# ---------------------------------------------------------------------------------------------- Docker
DOCKER_TIMINGS: dict[str, float] = {}  # reported at the end of the run (the docker part's time budget)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """A real Docker engine for the session: $TRITONLAB_TEST_DOCKER_HOST or a running system engine if there is one
    (reused, never stopped: a second daemon would fight it over the docker0 bridge), else a private dockerd started
    here (root needed; data root in a temp dir) and stopped by PID at the end. Asserts no tritonlab container is
    left."""
    from tritonlab.container import dockerd, engine

    t0 = time.monotonic()
    old_host = os.environ.get("DOCKER_HOST")
    with contextlib.ExitStack() as stack:
        host = os.environ.get("TRITONLAB_TEST_DOCKER_HOST") or dockerd.system_engine()
        if host is None:
            try:
                host = stack.enter_context(dockerd.private_dockerd())
            except engine.DockerUnavailable as e:
                if os.environ.get("CI"):
                    pytest.fail(f"no Docker engine for the docker tests: {e}")
                pytest.skip(f"no Docker engine: {e.message} ({e.fix})")
        DOCKER_TIMINGS["dockerd start"] = time.monotonic() - t0
        os.environ["DOCKER_HOST"] = host
        try:
            yield host
            client = engine.connect(host)
            left = engine.own_containers(client, any_cache=True)
            for container in left:
                engine.remove(container, grace=0)
            assert left == [], f"containers left behind by the suite: {[c.name for c in left]}"
        finally:
            if old_host is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = old_host
    DOCKER_TIMINGS["docker total"] = time.monotonic() - t0


@pytest.fixture(scope="session")
def cpu_image(docker_engine: str) -> str:
    """The CPU Triton image, built through the real CLI (`tritonlab image build`); a rebuild must be a cache hit."""
    import json

    t0 = time.monotonic()
    first = subprocess.run([str(VENV_BIN / "tritonlab"), "image", "build", "--json"], capture_output=True, text=True,
                           timeout=1200)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)
    DOCKER_TIMINGS["image build" + (" (cache hit)" if report["cached"] else " (cold)")] = time.monotonic() - t0
    again = json.loads(subprocess.run([str(VENV_BIN / "tritonlab"), "image", "build", "--json"], capture_output=True,
                                      text=True, check=True).stdout)  # fmt: skip
    assert again["cached"] and again["id"] == report["id"]
    return report["tag"]


@pytest.fixture
def no_leaked_containers(docker_engine: str) -> Iterator[None]:
    """The test leaves no tritonlab container behind (running or stopped)."""
    from tritonlab.container import engine

    client = engine.connect(docker_engine)
    before = {c.id for c in engine.own_containers(client, any_cache=True)}
    yield
    leaked = lambda: [c.name for c in engine.own_containers(client, any_cache=True) if c.id not in before]  # noqa: E731
    assert wait_for(lambda: not leaked(), timeout=20), f"containers leaked: {leaked()}"
    client.close()


@pytest.fixture(params=["embedded", "docker"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per owned backend: start_server()/create_server() pick it up from TRITONLAB_BACKEND."""
    if request.param == "docker":
        request.getfixturevalue("cpu_image")
        request.getfixturevalue("no_leaked_containers")
    monkeypatch.setenv("TRITONLAB_BACKEND", request.param)
    return request.param


def _uses_docker(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "docker_engine" in getattr(item, "fixturenames", ()) or params.get("backend") == "docker"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Add up the time of every test that runs on Docker (setup, call, teardown): the docker part's budget."""
    t0 = time.monotonic()
    yield
    if _uses_docker(item):
        DOCKER_TIMINGS["docker tests (incl. engine start and image build)"] = (
            DOCKER_TIMINGS.get("docker tests (incl. engine start and image build)", 0.0) + time.monotonic() - t0
        )
        DOCKER_TIMINGS["docker test count"] = DOCKER_TIMINGS.get("docker test count", 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if DOCKER_TIMINGS:
        parts = ", ".join(f"{k} {v:.1f} s" if "count" not in k else f"{k} {v:.0f}" for k, v in DOCKER_TIMINGS.items())
        terminalreporter.write_line(f"docker: {parts}")


# ---------------------------------------------------------------------------------------------- engine (lab 5)
# One local model, one converted checkpoint and ONE real AOTInductor build per test session, shared by the convert,
# build and serving tests (a cold build takes about 30-60 s on 2 cores). Here, not in tests/engine/conftest.py: a
# second module named conftest would shadow this one for the tests that import helpers from it.


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tritonlab.engine.model import make_llama

    return make_llama(tmp_path_factory.mktemp("engine") / "hf")


@pytest.fixture(scope="session")
def checkpoint_dir(llama_dir: Path) -> Path:
    from tritonlab.engine.convert import convert_checkpoint

    return convert_checkpoint(llama_dir, llama_dir.parent / "ckpt-float32", dtype="float32")


@pytest.fixture(scope="session")
def engine_build(checkpoint_dir: Path):
    from tritonlab.engine.build import build_engine

    # Small limits keep the tests quick; the session's isolated cache makes this build cold.
    return build_engine(
        checkpoint_dir, checkpoint_dir.parent / "engine", max_batch_size=4, max_input_len=32, max_seq_len=256,
        progress=False,
    )  # fmt: skip


@pytest.fixture(scope="session")
def engine_dir(engine_build) -> Path:
    return engine_build.engine_dir


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A private copy of the shipped example repository (tests may edit it)."""
    from tritonlab.examples import example_repository

    dst = tmp_path / "model_repository"
    shutil.copytree(example_repository(), dst)
    return dst


@pytest.fixture(scope="module")
def server() -> Iterator:
    """One running embedded server on the shipped example, shared by a test module."""
    from tritonlab.server import start_server

    with start_server() as running:
        yield running


def add_sub_inputs(module, a, b):
    """INPUT0/INPUT1 for add_sub built with tritonclient.http or tritonclient.grpc."""
    inputs = [module.InferInput("INPUT0", list(a.shape), "FP32"), module.InferInput("INPUT1", list(b.shape), "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


@contextlib.contextmanager
def jupyterlab(root: Path, command: list[str] | None = None) -> Iterator[tuple[str, str, int]]:
    """Run `tritonlab lab --dir root` (or ``command``) until it prints its URL; yield (url, token, port)."""
    from tritonlab.server.ports import free_ports

    port = free_ports(1)[0]
    env = {**os.environ, "TRITONLAB_LAB_PORT": str(port)}
    command = command or [str(VENV_BIN / "tritonlab"), "lab", "--dir", str(root)]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if m := re.search(r"course is open:\s+(http://127\.0\.0\.1:(\d+)/lab\?token=(\w+))", line):
                yield m[1], m[3], int(m[2])
                break
        else:
            raise AssertionError("JupyterLab did not print its URL:\n" + "".join(seen[-30:]))
        if not seen or "course is open" not in seen[-1]:
            raise AssertionError("JupyterLab did not print its URL:\n" + "".join(seen[-30:]))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


# ---------------------------------------------------------------------------------------------- bad input
# Permission tests need a real unprivileged user: CI runs as root, which reads everything. setpriv drops to nobody
# (as tests/server/test_container.py does); nobody can reach only folders others may enter, so those tests work in
# ``public_tmp``, never in pytest's tmp_path (mode 700).
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temp folder every user may enter (0755), removed afterwards; ``cache`` in it is a tritonlab cache that
    nobody may write."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="tritonlab-public-"))
    root.chmod(0o755)
    (root / "cache").mkdir(mode=0o777)
    (root / "cache").chmod(0o777)
    try:
        yield root
    finally:
        for path in [root, *root.rglob("*")]:  # give back what a test took away, so it can be removed
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def run_cli(
    *args: str, as_nobody: bool = False, cwd: Path | None = None, env: dict | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`tritonlab ARGS`, optionally as user nobody (its cache then in ``env['TRITONLAB_CACHE_DIR']``)."""
    command = [*(AS_NOBODY if as_nobody else []), str(VENV_BIN / "tritonlab"), *args]
    return subprocess.run(command, capture_output=True, text=True, errors="replace", cwd=cwd, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, stdin=subprocess.DEVNULL)  # fmt: skip


def tree_digest(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, mode, size and content hash (links: their target): equal digests
    before and after a command prove it changed nothing there. Sparse or huge files are hashed by size and ends."""
    import hashlib

    digest: dict[str, tuple] = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder) / name
            info = path.lstat()
            if path.is_symlink():
                digest[os.fsdecode(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                digest[os.fsdecode(path)] = ("dir", info.st_mode)
            else:
                h = hashlib.sha256()
                with contextlib.suppress(OSError), path.open("rb") as handle:
                    h.update(handle.read(1 << 20))
                    handle.seek(max(0, info.st_size - (1 << 20)))
                    h.update(handle.read(1 << 20))
                digest[os.fsdecode(path)] = ("file", info.st_mode, info.st_size, h.hexdigest())
    return digest
