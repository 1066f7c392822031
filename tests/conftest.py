"""Shared fixtures: an isolated tritonlab cache, real servers, and a guard that no tritonserver leaks."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def tritonserver_pids() -> set[int]:
    pids = set()
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "tritonserver":
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    pids.add(proc.pid)
            except psutil.Error:
                pass
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
