"""`tritonlab up --repo` on bad input: paths that are missing, files, link loops or not UTF-8; a repository of damaged,
binary, huge and oddly named models; folders the user may not read. Each: the error names the path (and Triton's
own reason for each model), a fix, exit code 1 (2 for what the command line refuses), no traceback, nothing changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_cli, tree_digest

MODEL_PY = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def model(repo: Path, name: str, config: bytes) -> Path:
    directory = repo / name
    (directory / "1").mkdir(parents=True)
    (directory / "1" / "model.py").write_text(MODEL_PY)
    (directory / "config.pbtxt").write_bytes(config)
    return directory


def assert_clean_failure(result, code: int = 1) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == code and "Traceback" not in text, text[-4000:]
    return text


@pytest.mark.parametrize("kind", ["missing", "a_file", "link_loop", "non_utf8_missing"])
def test_a_repository_path_that_is_not_a_folder(tmp_path, kind):
    path = tmp_path / {"non_utf8_missing": os.fsdecode(b"repo\xff")}.get(kind, "repo")
    if kind == "a_file":
        path.write_text('backend: "python"')
    elif kind == "link_loop":
        path.symlink_to(path.name)
    before = tree_digest(tmp_path)
    text = assert_clean_failure(run_cli("up", "--repo", str(path), "--timeout", "60"))
    assert "error: model repository" in text and "fix:" in text
    assert ("cannot be resolved" in text) if kind == "link_loop" else ("does not exist or is not a directory" in text)
    assert tree_digest(tmp_path) == before


def test_a_repository_of_bad_models_names_each_with_tritons_reason(tmp_path):
    repo = tmp_path / "repo"
    model(repo, "malformed", b'backend: "python"\nmax_batch_size: 4\ninput [ { name: "X" dims: [ 4 ] \n')
    model(repo, "binary", bytes(range(1, 256)) * 8)
    huge = model(repo, "huge", b"")
    with (huge / "config.pbtxt").open("wb") as handle:  # 200 MB, sparse: NUL bytes after a valid first line
        handle.write(b'backend: "python"\n')
        handle.truncate(200 * 2**20)
    model(repo, os.fsdecode(b"odd\xffname"), b'backend: "python"\nmax_batch_size: -2\n')
    before = tree_digest(tmp_path)
    text = assert_clean_failure(run_cli("up", "--repo", str(repo), "--timeout", "120"))
    assert "Triton could not load 4 model(s)" in text and "fix:" in text, text[-4000:]
    flat = " ".join(text.split())  # the terminal wraps long lines
    assert f"malformed: failed to read text proto from {repo}/malformed/config.pbtxt" in flat and "4:1" in flat
    assert f"{repo}/binary/config.pbtxt" in flat and f"{repo}/huge/config.pbtxt" in flat
    assert "Invalid control characters" in flat  # the 200 MB file: Triton's own words, not 200 MB of them
    assert "odd" in flat and "max_batch_size" in flat
    assert len(text) < 20_000
    assert tree_digest(tmp_path) == before


def test_permissions_as_an_unprivileged_user(public_tmp):
    """Real permission errors (CI runs as root, which reads everything): `tritonlab up` as user nobody."""
    env = {"TRITONLAB_CACHE_DIR": str(public_tmp / "cache")}
    closed = public_tmp / "closed"
    model(closed, "m", b'backend: "python"\n')
    closed.chmod(0o700)
    refused = run_cli("up", "--repo", str(closed), as_nobody=True, env=env)
    assert_clean_failure(refused, code=2)
    assert "is not readable" in refused.stderr
    repo = public_tmp / "repo"
    model(repo, "hidden", b'backend: "python"\n').chmod(0o700)
    before = tree_digest(repo)
    text = assert_clean_failure(run_cli("up", "--repo", str(repo), "--timeout", "120", as_nobody=True, env=env))
    assert f"hidden: failed to open directory {repo}/hidden" in " ".join(text.split()) and "fix:" in text
    assert tree_digest(repo) == before
    root_cache = public_tmp / "roots-cache"  # a cache folder the user may not write: error + fix, no traceback
    root_cache.mkdir(mode=0o755)
    text = assert_clean_failure(run_cli("up", "--repo", str(repo), as_nobody=True,
                                        env={"TRITONLAB_CACHE_DIR": str(root_cache / "sub")}))  # fmt: skip
    assert "Permission denied" in text and "TRITONLAB_CACHE_DIR" in text
