"""engine/runtime.py: where a CPU engine's thread runs (the placement policy; the served placement itself is
checked on a real server in test_engine_serving.py)."""

from __future__ import annotations

import os

import pytest

from tritonlab.engine import runtime
from tritonlab.engine.runtime import CpuPlacement, engine_placement, format_cpu_list, parse_cpu_list


@pytest.mark.parametrize(
    "text, cpus", [("3", [3]), ("0-2,5", [0, 1, 2, 5]), (" 1 , 3-4", [1, 3, 4]), ("2,2-3", [2, 3])]
)
def test_cpu_lists_read_like_linux_writes_them(text, cpus):
    assert parse_cpu_list(text) == cpus
    assert parse_cpu_list(format_cpu_list(cpus)) == cpus


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-", "-2", "1,,2", "0x3"])
def test_a_bad_cpu_list_names_the_part(text):
    with pytest.raises(ValueError, match=r"in CPU list .*write CPU numbers and ranges"):
        parse_cpu_list(text)


def test_format_cpu_list_joins_runs():
    assert format_cpu_list({5, 0, 1, 2, 7}) == "0-2,5,7"


@pytest.fixture
def eight_cpus(monkeypatch):
    # The policy's input is the OS's answer: eight CPUs stand for a larger machine than this one.
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(8)))


def test_auto_gives_the_engine_the_last_cpus_and_the_rest_to_the_others(eight_cpus):
    assert engine_placement("auto", 1) == CpuPlacement(frozenset({7}), frozenset(range(7)))
    assert engine_placement(None, 2) == CpuPlacement(frozenset({6, 7}), frozenset(range(6)))


def test_auto_places_nothing_when_no_cpu_would_be_left(eight_cpus):
    assert engine_placement("auto", 8) is None and engine_placement("auto", 12) is None


def test_none_leaves_placement_to_the_os(eight_cpus):
    assert engine_placement("none", 1) is None and engine_placement(" NONE ", 1) is None


def test_a_cpu_list_names_the_engines_cpus(eight_cpus):
    assert engine_placement("2-3", 1) == CpuPlacement(frozenset({2, 3}), frozenset({0, 1, 4, 5, 6, 7}))


def test_cpus_this_process_cannot_use_are_refused_with_the_ones_it_can(eight_cpus):
    with pytest.raises(ValueError, match=r"CPU 9-10 is not available to this process \(it may use 0-7\)"):
        engine_placement("7,9-10", 1)


def test_every_cpu_for_the_engine_is_refused(eight_cpus):
    with pytest.raises(ValueError, match="leaving none for Triton's threads"):
        engine_placement("0-7", 1)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_auto_on_this_machine():
    allowed = sorted(os.sched_getaffinity(0))
    placed = engine_placement("auto", 1)
    if len(allowed) == 1:
        assert placed is None
    else:
        assert placed == CpuPlacement(frozenset(allowed[-1:]), frozenset(allowed[:-1]))
