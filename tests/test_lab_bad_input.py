"""`tritonlab lab --dir` (what `make lab` runs) on a folder that is missing, a file, a link loop or not UTF-8: error,
fix, exit code 1, no traceback, and no JupyterLab started."""

from __future__ import annotations

import os

import pytest

from conftest import run_cli, tree_digest


@pytest.mark.parametrize("kind", ["missing", "a_file", "link_loop", "non_utf8_missing"])
def test_lab_refuses_a_folder_it_cannot_open(tmp_path, kind):
    path = tmp_path / {"non_utf8_missing": os.fsdecode(b"labs\xff")}.get(kind, "labs")
    if kind == "a_file":
        path.write_text("not a folder")
    elif kind == "link_loop":
        path.symlink_to(path.name)
    before = tree_digest(tmp_path)
    result = run_cli("lab", "--dir", str(path), timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "is not a directory" in result.stderr and "fix:" in result.stderr and "course is open" not in result.stdout
    assert tree_digest(tmp_path) == before
