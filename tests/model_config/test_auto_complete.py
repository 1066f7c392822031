"""Auto-complete is turned off only where it adds nothing: the rules, and a real Triton serving the same configuration
both ways (and starting sooner without it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tritonlab.model_config.auto_complete import adds_nothing
from tritonlab.server import start_server

PYTHON_CONFIG = 'backend: "python"\nmax_batch_size: 0\n'


def model(repo: Path, name: str, config: str | None, code: str = "class TritonPythonModel:\n    pass\n") -> Path:
    (repo / name / "1").mkdir(parents=True)
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)
    (repo / name / "1" / "model.py").write_text(code)
    return repo / name


def test_python_models_and_ensembles_need_nothing_from_auto_complete(tmp_path: Path):
    model(tmp_path, "pre", PYTHON_CONFIG)
    model(tmp_path, "post", PYTHON_CONFIG)
    (tmp_path / "ensemble" / "1").mkdir(parents=True)
    (tmp_path / "ensemble" / "config.pbtxt").write_text('platform: "ensemble"\nmax_batch_size: 0\n')
    (tmp_path / ".ipynb_checkpoints").mkdir()  # hidden folders are not models
    assert adds_nothing(tmp_path)


AUTO_COMPLETING_MODEL = """\
class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        return config
"""


@pytest.mark.parametrize(
    "config, code",
    [
        (PYTHON_CONFIG, AUTO_COMPLETING_MODEL),
        ('backend: "onnxruntime"\n', ""),  # its auto-complete reads inputs, outputs and batching from the model file
        ('platform: "pytorch_libtorch"\n', ""),
        (None, "class TritonPythonModel:\n    pass\n"),  # no config.pbtxt: Triton makes one
        ("", "class TritonPythonModel:\n    pass\n"),  # empty: Triton infers the backend from the files
        ('backend: "python"\nmax_batch_size: [\n', ""),  # unreadable: Triton's own error, as usual
        ('backend: "python"\nno_such_field: 1\n', ""),
    ],
    ids=["auto_complete_config", "onnx", "libtorch", "no-config", "empty-config", "unparseable", "unknown-field"],
)
def test_anything_auto_complete_could_change_keeps_it_on(tmp_path: Path, config: str | None, code: str):
    model(tmp_path, "ok", PYTHON_CONFIG)
    model(tmp_path, "m", config, code)
    assert not adds_nothing(tmp_path)


def test_an_empty_or_missing_repository_keeps_it_on(tmp_path: Path):
    assert not adds_nothing(tmp_path)
    assert not adds_nothing(tmp_path / "missing")


def test_the_shipped_example_is_served_with_the_same_config_both_ways(example_repo: Path, tmp_path: Path):
    shutil.copytree(example_repo / "add_sub", tmp_path / "repo" / "add_sub")
    loaded = {}
    for setting in (None, True):  # None: tritonlab's choice (off here); True: Triton's default
        with start_server(tmp_path / "repo", auto_complete=setting) as server:
            flagged = "--disable-auto-complete-config" in server.serving_args()
            assert flagged == (setting is None)
            assert server.model_ready("add_sub")
            loaded[setting] = server.model_config("add_sub")
    assert loaded[None] == loaded[True]
    assert loaded[None]["input"] and loaded[None]["max_batch_size"] == 8  # a real config, not two empty ones


def test_explicit_mode_keeps_auto_complete_for_models_added_later(example_repo: Path):
    with start_server(example_repo, model_control_mode="explicit", models=["add_sub"]) as server:
        assert "--disable-auto-complete-config" not in server.serving_args()
