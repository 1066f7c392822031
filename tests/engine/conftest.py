"""Fixtures for the embedded engine (Track B): one local model, one converted checkpoint and ONE real AOTInductor
build per test session, shared by the convert, build and serving tests (a cold build takes about 30-60 s on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest


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
