"""`tritonlab validate` on bad input: damaged, empty, binary and huge files, links that loop, folders it may not read,
names that are not UTF-8. Each case: a finding that names the file and the fix, exit code 1, no traceback, and the
input left exactly as it was."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import run_cli, tree_digest
from tritonlab.model_config import validate

GOOD = 'backend: "python"\nmax_batch_size: 0\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
MODEL_PY = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def model(root: Path, name: str | bytes = "m", config: bytes | None = GOOD.encode()) -> Path:
    directory = root / os.fsdecode(name)
    (directory / "1").mkdir(parents=True)
    (directory / "1" / "model.py").write_text(MODEL_PY)
    if config is not None:
        (directory / "config.pbtxt").write_bytes(config)
    return directory


def sparse(path: Path, size: int, head: bytes = b"") -> None:
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(size)


# case -> (build the input under root, return the path to validate), words the finding must hold
def _syntax(root):
    return model(root, config=b'backend: "python"\nmax_batch_size: 4\ninput [ { name: "X" dims: [ 4 ] \n')


def _empty_file(root):
    return model(root, config=b"")


def _binary(root):
    return model(root, config=bytes(range(256)) * 40)


def _nul(root):
    return model(root, config=b'backend: "python"\nmax_batch\x00_size: 2\n')


def _huge(root):
    directory = model(root, config=None)
    sparse(directory / "config.pbtxt", 200 * 2**20, b'backend: "python"\n# ')
    return directory


def _huge_model_py(root):
    directory = model(root)
    sparse(directory / "1" / "model.py", 20 * 2**20, MODEL_PY.encode() + b"#")
    return directory


def _config_is_dir(root):
    directory = model(root, config=None)
    (directory / "config.pbtxt").mkdir()
    return directory


def _config_link_loop(root):
    directory = model(root, config=None)
    (directory / "config.pbtxt").symlink_to("config.pbtxt")
    return directory


def _config_link_dangling(root):
    directory = model(root, config=None)
    (directory / "config.pbtxt").symlink_to(root / "gone.pbtxt")
    return directory


def _path_link_loop(root):
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    return root / "a"


def _path_missing(root):
    return root / "nothing-here"


def _empty_repo(root):
    (root / "repo").mkdir()
    return root / "repo"


def _non_utf8_model(root):
    return model(root, name=b"m\xff\xfe", config=b'name: "other"\nbackend: "python"\n')


def _non_utf8_repo(root):
    model(root / os.fsdecode(b"repo\xff"), config=b"max_batch_size: -1\n")
    return root / os.fsdecode(b"repo\xff")


def _model_in_loop_repo(root):
    repo = root / "repo"
    model(repo, config=b"garbage {{{")
    (repo / "loop").symlink_to(repo / "loop")
    return repo


CASES = {
    "malformed": (_syntax, ["does not parse", "config.pbtxt:"]),
    "empty_config": (_empty_file, ["config.pbtxt is empty", "warning"]),  # Triton accepts it: a warning
    "binary_config": (_binary, ["not text", "not UTF-8"]),
    "nul_bytes": (_nul, ["NUL bytes", "config.pbtxt:2:"]),
    "huge_config_200MB": (_huge, ["200 MiB", "not read"]),
    "huge_model_py": (_huge_model_py, ["too big to check", "warning"]),
    "config_is_a_folder": (_config_is_dir, ["config.pbtxt is a directory"]),
    "config_link_loop": (_config_link_loop, ["symbolic link loop"]),
    "config_link_dangling": (_config_link_dangling, ["gone.pbtxt, which does not exist"]),
    "path_link_loop": (_path_link_loop, ["symbolic link loop"]),
    "path_missing": (_path_missing, ["no such file or directory"]),
    "empty_repository": (_empty_repo, ["no models here"]),
    "non_utf8_model_name": (_non_utf8_model, ["name is 'other' but the directory is"]),
    "non_utf8_repository": (_non_utf8_repo, ["max_batch_size is -1"]),
    "repository_with_link_loop": (_model_in_loop_repo, ["does not parse"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_finding_with_a_fix(tmp_path, case):
    build, words = CASES[case]
    target = build(tmp_path)
    before = tree_digest(tmp_path)
    started = time.monotonic()
    report = validate(target, gpus=0)
    assert time.monotonic() - started < 10  # a 200 MB file is not read
    assert report.findings and all(f.fix and f.path for f in report.findings)
    assert report.valid == ("warning" in words)
    text = "\n".join(str(f) for f in report.findings)
    assert "validator failed" not in text and len(text) < 5000, text[:2000]  # no dump of a huge or binary line
    assert all(w in text for w in words), text
    assert tree_digest(tmp_path) == before  # nothing changed, nothing created


@pytest.mark.parametrize("case", ["malformed", "binary_config", "huge_config_200MB", "path_link_loop",
                                  "non_utf8_model_name"])  # fmt: skip
def test_cli_says_where_and_how_to_fix_with_exit_code_1(tmp_path, case):
    build, words = CASES[case]
    target = build(tmp_path)
    before = tree_digest(tmp_path)
    result = run_cli("validate", str(target))
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert all(w in result.stdout for w in words) and "fix:" in result.stdout, result.stdout
    if case == "malformed":
        as_json = run_cli("validate", "--json", str(target))
        assert as_json.returncode == 1 and json.loads(as_json.stdout)["findings"][0]["line"] == 3
    assert tree_digest(tmp_path) == before


def test_unreadable_files_and_folders_as_an_unprivileged_user(public_tmp):
    """A real permission error (root reads everything): run the CLI as user nobody."""
    repo = public_tmp / "repo"
    model(repo, "closed_config")
    (repo / "closed_config" / "config.pbtxt").chmod(0o600)
    model(repo, "closed_folder").chmod(0o700)
    model(repo, "fine")
    closed = public_tmp / "closed"
    model(closed, "inside")
    closed.chmod(0o700)
    before = tree_digest(public_tmp)
    result = run_cli("validate", str(repo), as_nobody=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    out = result.stdout
    assert "closed_config/config.pbtxt: error: cannot read config.pbtxt: Permission denied" in out, out
    assert "fix: give read access: chmod a+r" in out
    assert "closed_folder: error: cannot read the model directory (permission denied)" in out
    assert "fine" not in out.split("error")[0] and "3 model(s): invalid (2 error(s)" in out
    folder = run_cli("validate", str(closed), as_nobody=True)  # the command line itself refuses it (usage error)
    assert folder.returncode == 2 and "is not readable" in folder.stderr and "Traceback" not in folder.stderr
    assert "cannot read this directory (permission denied)" in str(validate(closed).findings) or os.geteuid() == 0
    below = run_cli("validate", str(closed / "inside"), as_nobody=True)
    assert below.returncode == 1 and "permission denied on a folder above it" in below.stdout, below.stdout
    assert tree_digest(public_tmp) == before
