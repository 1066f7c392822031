"""The suite's own layout rules: test directories are not packages, so module names must be unique across them."""

from __future__ import annotations

from collections import Counter

from conftest import REPO_ROOT

TESTS = REPO_ROOT / "tests"


def python_files() -> list:
    return [p for p in TESTS.rglob("*.py") if "corpus" not in p.parts and "__pycache__" not in p.parts]


def test_one_conftest_for_the_whole_suite():
    # A second conftest.py would be imported as module "conftest" too and shadow the one tests import helpers from.
    assert [p.relative_to(TESTS) for p in python_files() if p.name == "conftest.py" and p.parent != TESTS
            and not (p.parent / "__init__.py").exists()] == []  # fmt: skip


def test_test_module_names_are_unique_outside_packages():
    loose = [p for p in python_files() if not (p.parent / "__init__.py").exists()]
    clashes = {name: n for name, n in Counter(p.name for p in loose).items() if n > 1}
    assert clashes == {}
