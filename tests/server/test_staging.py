"""Staging the wheel's tritonserver into a cache dir, once, safely under concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from tritonlab.errors import EnvironmentProblem
from tritonlab.server import staging


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONLAB_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_stage_puts_this_pythons_stub_in_the_python_backend(fresh_cache):
    staged = staging.stage()
    assert staged.root.parent == fresh_cache / "tritonserver"
    stub = staged.backends / "python" / staging.STUB_NAME
    assert stub.is_file() and os.access(stub, os.X_OK)
    wheel_stub = staging.find_wheel_server().stub_for(sys.version_info[:2])
    assert stub.read_bytes() == wheel_stub.read_bytes()
    assert os.access(staged.binary, os.X_OK)
    assert (staged.backends / "python" / "libtriton_python.so").is_file()
    assert not (staged.root / "python_backend_stubs").exists()


def test_second_stage_is_a_cheap_no_op(fresh_cache):
    first = staging.stage()
    marker = first.root / ".tritonlab-staged"
    mtime = marker.stat().st_mtime
    started = time.perf_counter()
    again = staging.stage()
    assert again == first and marker.stat().st_mtime == mtime
    assert time.perf_counter() - started < 0.5


def test_concurrent_staging_yields_one_complete_tree(fresh_cache):
    with ProcessPoolExecutor(4) as pool:
        roots = list(pool.map(_stage_root, range(4)))
    assert len(set(roots)) == 1
    assert not [p for p in (fresh_cache / "tritonserver").iterdir() if p.name.startswith(".staging-")]


def _stage_root(_: int) -> str:
    return str(staging.stage().root)


def test_python_without_a_stub_is_a_clear_error(fresh_cache):
    with pytest.raises(EnvironmentProblem, match=r"no python backend stub for Python 3\.99") as caught:
        staging.stage(python=(3, 99))
    assert "3.11" in str(caught.value) and caught.value.fix


def test_setup_entry_point_stages_and_reports(fresh_cache):
    env = {**os.environ, "TRITONLAB_CACHE_DIR": str(fresh_cache)}
    result = subprocess.run([sys.executable, "-m", "tritonlab.envsetup"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "embedded tritonserver staged" in result.stdout and "perf_analyzer runs" in result.stdout
