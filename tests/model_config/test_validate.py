"""`tritonlab validate` agrees with the real Triton server on a corpus of good and bad model directories."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import VENV_BIN
from tritonlab.model_config import validate
from tritonlab.model_config.validate import gpus_available

CORPUS = Path(__file__).parent / "corpus"
HANGS_TRITON = {"bad_missing_model_py"}  # Triton never finishes loading it: judged last, after a timeout
CASES = sorted((p.name for p in CORPUS.iterdir()), key=lambda n: (n in HANGS_TRITON, n))


def meta(case: str) -> dict:
    return tomllib.loads((CORPUS / case / "case.toml").read_text())


def test_corpus_has_no_empty_directory():
    # git drops empty folders: an ensemble's empty version folder needs a keep-file to survive a clone.
    empty = [str(d) for d in CORPUS.rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert empty == []


def test_corpus_is_large_and_covers_both_verdicts():
    expects = [meta(c)["expect"] for c in CASES]
    assert len(CASES) >= 40 and expects.count("valid") >= 15 and expects.count("invalid") >= 20


@pytest.mark.parametrize("case", CASES)
def test_validator_verdict(case):
    report = validate(CORPUS / case, gpus=gpus_available())
    assert ("valid" if report.valid else "invalid") == meta(case)["expect"], [str(f) for f in report.findings]
    for finding in report.findings:
        assert finding.path and finding.message and finding.fix


@pytest.fixture(scope="module")
def corpus_server():
    from tritonlab.server import start_server

    with start_server(CORPUS, model_control_mode="explicit") as server:
        yield server


@pytest.mark.parametrize("case", [c for c in CASES if meta(c)["loadable_here"]])
def test_real_triton_agrees(case, corpus_server):
    client = corpus_server.http_client(network_timeout=20.0)
    try:
        client.load_model(case)
        triton = "valid"
        client.unload_model(case)
    except Exception:  # InferenceServerException, or a timeout for the model that hangs the load
        triton = "invalid"
    validator = "valid" if validate(CORPUS / case, gpus=gpus_available()).valid else "invalid"
    assert validator == triton == meta(case)["expect"]


def test_locations_name_file_line_and_column():
    (finding,) = validate(CORPUS / "bad_syntax").findings
    assert finding.path.endswith("bad_syntax/config.pbtxt") and (finding.line, finding.column) == (4, 52)
    (finding,) = validate(CORPUS / "bad_model_py_syntax").findings
    assert finding.path.endswith("1/model.py") and finding.line == 1
    located = [f for f in validate(CORPUS / "ens_type_mismatch").findings if f.severity == "error"]
    assert located and all(f.line for f in located)


def test_a_repository_reports_every_model():
    report = validate(CORPUS)
    assert sorted(report.models) == sorted(CASES) and not report.valid
    assert {Path(f.path).relative_to(CORPUS).parts[0] for f in report.errors} >= {"bad_zero_dim", "ens_unused_input"}


def test_cli_exit_codes_and_json(tmp_path):
    ok = subprocess.run([str(VENV_BIN / "tritonlab"), "validate", str(CORPUS / "ok_add_sub")], capture_output=True,
                        text=True)  # fmt: skip
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = subprocess.run([str(VENV_BIN / "tritonlab"), "validate", str(CORPUS / "bad_zero_dim"), "--json"],
                         capture_output=True, text=True)  # fmt: skip
    data = json.loads(bad.stdout)
    assert bad.returncode == 1 and data["valid"] is False and data["findings"][0]["line"] == 5


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "plain_file", "symlink_loop", "config_is_dir", "unreadable"])
def test_odd_paths_never_raise(tmp_path, kind):
    target = tmp_path / "m"
    if kind == "empty_dir":
        target.mkdir()
    elif kind == "plain_file":
        target.write_text("hello")
    elif kind == "symlink_loop":
        target.mkdir()
        (target / "1").symlink_to(target / "1")
        (target / "config.pbtxt").symlink_to(target / "config.pbtxt")
    elif kind == "config_is_dir":
        (target / "config.pbtxt").mkdir(parents=True)
    elif kind == "unreadable":
        (target / "1").mkdir(parents=True)
        (target / "config.pbtxt").write_text('backend: "python"')
        os.chmod(target / "config.pbtxt", 0)
    report = validate(target)
    assert not report.valid or (kind == "unreadable" and os.geteuid() == 0)
    assert all(f.fix for f in report.findings)


FRAGMENTS = st.sampled_from([
    'name: "m"', 'backend: "python"', 'platform: "ensemble"', "max_batch_size: 4", "max_batch_size: -3",
    'input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]', 'output [ { name: "Y" dims: [ 0 ] } ]',
    "dynamic_batching { preferred_batch_size: [ 9 ] }", "instance_group [ { kind: KIND_GPU count: 0 } ]",
    'ensemble_scheduling { step [ { model_name: "m" input_map { key: "a" value: "b" } } ] }',
    "version_policy: { specific { versions: [ 2 ] } }",
    "{", "}", "[", '"', "#", "\x00", "é",
])  # fmt: skip


FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(FUZZ, max_examples=150)
@given(
    parts=st.lists(st.one_of(FRAGMENTS, st.text(max_size=30)), max_size=12),
    raw=st.binary(max_size=64),
    versions=st.lists(st.sampled_from(["1", "2", "x", "01"]), max_size=3),
    model_py=st.text(max_size=40),
)
def test_fuzzed_repositories_never_raise(tmp_path_factory, parts, raw, versions, model_py):
    repo = tmp_path_factory.mktemp("fuzz")
    model = repo / "m"
    model.mkdir()
    (model / "config.pbtxt").write_bytes("\n".join(parts).encode(errors="surrogatepass") + raw)
    for version in versions:
        (model / version).mkdir(exist_ok=True)
        (model / version / "model.py").write_text(model_py, errors="surrogatepass")
    for target in (model, repo):
        report = validate(target, gpus=0)
        assert isinstance(report.valid, bool)
        assert not any("validator failed" in f.message for f in report.findings), [str(f) for f in report.findings]


# Layouts as a learner's disk may hold them: odd names (not UTF-8 too), empty and binary files, folders where files
# belong, links that loop or lead nowhere, at any depth of a repository.
NAMES = st.sampled_from(["m", "n", "1", "2", "01", "x", "config.pbtxt", "model.py", "é", os.fsdecode(b"\xff\xfe")])
ENTRIES = st.tuples(
    st.lists(NAMES, min_size=1, max_size=3),
    st.one_of(
        st.just("dir"), st.just("loop"), st.tuples(st.just("link"), st.lists(NAMES, min_size=1, max_size=2)),
        st.binary(max_size=40), st.sampled_from([b"", b'backend: "python"', b"max_batch_size: 2\x00", b"\xff{"]),
    ),
)  # fmt: skip


@settings(FUZZ, max_examples=200)
@given(entries=st.lists(ENTRIES, max_size=10))
def test_fuzzed_layouts_never_raise_and_change_nothing(tmp_path_factory, entries):
    from conftest import tree_digest

    repo = tmp_path_factory.mktemp("layout")
    for parts, kind in entries:
        path = repo.joinpath(*parts)
        with contextlib.suppress(OSError):  # a name already taken by another kind of entry: keep the first
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "dir":
                path.mkdir()
            elif kind == "loop":
                path.symlink_to(path.name)
            elif isinstance(kind, tuple):
                path.symlink_to(repo.joinpath(*kind[1]))
            else:
                path.write_bytes(kind)
    before = tree_digest(repo)
    for target in [repo, *repo.iterdir()]:
        report = validate(target, gpus=0)
        assert isinstance(report.valid, bool) and all(f.fix for f in report.findings)
        assert not any("validator failed" in f.message for f in report.findings), [str(f) for f in report.findings]
    assert tree_digest(repo) == before
