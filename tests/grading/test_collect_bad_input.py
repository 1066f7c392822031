"""`tritonlab grade` collection on bad input: empty, binary, truncated, huge and non-notebook files, links that loop
or lead nowhere, student names that are not UTF-8, folders the grader may not read, archives that are not zips.
Each bad submission gets 0 with the reason and the batch goes on; a path that cannot be graded at all is refused
with a fix before nbgrader starts; the submissions are never changed."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import AS_NOBODY, REPO_ROOT, run_cli, tree_digest
from tritonlab.errors import TritonLabError
from tritonlab.grading.course import collect

GOOD = REPO_ROOT / "labs" / "01_setup.ipynb"


def sparse(path: Path, size: int, head: bytes = b"") -> None:
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(size)


NON_UTF8 = os.fsdecode(b"b\xffd")
# student -> (how to make the submission under root, the reason it must get)
BAD = {
    "empty": (lambda r: (r / "empty.ipynb").write_bytes(b""), "empty.ipynb is empty"),
    "binary": (lambda r: (r / "binary.ipynb").write_bytes(bytes(range(128, 256)) * 4), "is not text"),
    "truncated": (lambda r: (r / "truncated.ipynb").write_text('{"cells": [{"cell_type": "co'), "not JSON (line 1"),
    "a_list": (lambda r: (r / "a_list.ipynb").write_text("[1, 2]"), "is not a Jupyter notebook"),
    "huge": (lambda r: sparse(r / "huge.ipynb", 200 * 2**20, b'{"cells": ['), "is 200 MiB"),
    "dangling": (lambda r: (r / "dangling.ipynb").symlink_to(r / "gone.ipynb"), "symbolic link to nothing"),
    "loop": (lambda r: (r / "loop.ipynb").symlink_to("loop.ipynb"), "symbolic link loop"),
    "b_d": (lambda r: (r / NON_UTF8).mkdir() or (r / NON_UTF8 / "lab.ipynb").write_bytes(b"\x00"), "not JSON"),
}  # fmt: skip


def submissions(root: Path) -> Path:
    subs = root / "subs"
    (subs / "good").mkdir(parents=True)
    shutil.copyfile(GOOD, subs / "good" / "01_setup.ipynb")
    (subs / os.fsdecode(b"gr\xe9ta")).mkdir()  # a Latin-1 name: not UTF-8, still graded
    shutil.copyfile(GOOD, subs / os.fsdecode(b"gr\xe9ta") / "01_setup.ipynb")
    (subs / "again").symlink_to(subs)  # a folder link loop: not followed
    for make, _ in BAD.values():
        make(subs)
    return subs


def test_bad_submissions_are_rejected_with_a_reason_and_the_good_ones_collected(tmp_path):
    subs = submissions(tmp_path)
    before = tree_digest(subs)
    rejected: dict[str, str] = {}
    started = time.monotonic()
    students = collect(subs, "01_setup", tmp_path / "course", rejected)
    assert time.monotonic() - started < 20  # the 200 MB notebook is not read
    assert students == ["good", "gr_ta"]
    assert sorted(rejected) == sorted(BAD), rejected
    for student, (_, reason) in BAD.items():
        assert reason in rejected[student], (student, rejected[student])
    copied = sorted(p.relative_to(tmp_path / "course") for p in (tmp_path / "course").rglob("*.ipynb"))
    assert copied == [Path(f"submitted/{s}/01_setup/01_setup.ipynb") for s in ("good", "gr_ta")]
    assert tree_digest(subs) == before
    with pytest.raises(TritonLabError, match="cannot be graded") as error:  # without a list: the first problem
        collect(subs, "01_setup", tmp_path / "course2")
    assert error.value.fix


NOBODY_COLLECT = """
import json, sys
from pathlib import Path
from tritonlab.grading.course import collect
rejected = {}
students = collect(Path(sys.argv[1]), "01_setup", Path(sys.argv[2]), rejected)
print(json.dumps({"students": students, "rejected": rejected}))
"""


def test_unreadable_notebooks_and_folders_as_an_unprivileged_user(public_tmp):
    subs = public_tmp / "subs"
    (subs / "good").mkdir(parents=True)
    shutil.copyfile(GOOD, subs / "good" / "01_setup.ipynb")
    shutil.copyfile(GOOD, subs / "private.ipynb")
    (subs / "private.ipynb").chmod(0o600)
    (subs / "closed").mkdir()
    shutil.copyfile(GOOD, subs / "closed" / "01_setup.ipynb")
    (subs / "closed").chmod(0o700)
    course = public_tmp / "course"
    course.mkdir(mode=0o777)
    course.chmod(0o777)
    before = tree_digest(subs)
    result = subprocess.run([*AS_NOBODY, sys.executable, "-c", NOBODY_COLLECT, str(subs), str(course)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    assert found["students"] == ["good"]
    assert found["rejected"] == {"private": "private.ipynb cannot be read (Permission denied)",
                                 "closed": "closed: the folder cannot be read (Permission denied)"}  # fmt: skip
    assert tree_digest(subs) == before


@pytest.mark.parametrize("kind", ["missing", "not_a_zip", "link_loop", "unreadable_folder"])
def test_submissions_that_cannot_be_graded_at_all_are_refused_before_nbgrader_runs(public_tmp, kind):
    path = public_tmp / "subs"
    if kind == "not_a_zip":
        path = public_tmp / "subs.zip"
        path.write_bytes(os.urandom(500))
    elif kind == "link_loop":
        path.symlink_to(path.name)
    elif kind == "unreadable_folder":
        path.mkdir(mode=0o700)
    before = tree_digest(public_tmp)
    started = time.monotonic()
    course = public_tmp / "cache" / "course"  # nobody may write there
    env = {"TRITONLAB_CACHE_DIR": str(public_tmp / "cache")}
    result = run_cli("grade", str(path), "--lab", "01_setup", "--course", str(course),
                     as_nobody=kind == "unreadable_folder", env=env)  # fmt: skip
    text = result.stdout + result.stderr
    assert result.returncode in (1, 2) and "Traceback" not in text, text[-3000:]
    assert ("error:" in text and "fix:" in text) or "is not readable" in text, text
    assert time.monotonic() - started < 60 and not course.exists()  # nothing prepared for a batch that cannot run
    assert tree_digest(public_tmp) == {**before, **{k: v for k, v in tree_digest(public_tmp).items() if "/cache/" in k}}


def test_a_class_of_bad_submissions_is_graded_zero_each_with_its_reason(tmp_path):
    """End to end through the CLI and nbgrader's course preparation: a zip of bad notebooks; the batch completes."""
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ann/01_setup.ipynb", b"")
        zf.writestr("bob/01_setup.ipynb", '{"cells": [')
        zf.writestr("cid.ipynb", bytes(range(200, 256)))
        zf.writestr("dee/01_setup.ipynb", '{"nbformat": 4}')
    before = tree_digest(tmp_path)
    result = run_cli("grade", str(archive), "--lab", "01_setup", "--course", str(tmp_path / "course"), timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    with (tmp_path / "course" / "grades.csv").open() as handle:
        grades = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert sorted(grades) == ["ann", "bob", "cid", "dee"]
    assert all(g["score"] == "0" and g["status"] == "failed" and g["reason"].startswith("not graded:")
               for g in grades.values()), grades  # fmt: skip
    assert "is empty" in grades["ann"]["reason"] and "not JSON" in grades["bob"]["reason"]
    assert "not text" in grades["cid"]["reason"] and "no list of cells" in grades["dee"]["reason"]
    assert float(grades["ann"]["max_score"]) > 0  # the lab's real maximum: a zero out of something
    assert {k: v for k, v in tree_digest(tmp_path).items() if "/course" not in k} == before
