"""`tritonlab check`, `tritonlab progress` and the notebook's check()/grade() on bad input: damaged, empty, binary and
huge state files, workspaces that are files, link loops or missing, folders nobody may write; and fuzzed results
files fed to the readers and checkpoints that use them. Each case: a clear message (and exit code), no traceback,
and what the learner had is still there."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import AS_NOBODY, run_cli, tree_digest
from tritonlab.bench import BenchTable
from tritonlab.checks import check, grade, store
from tritonlab.checks.core import Context, Fail, ServerInfo, Status, resolve, run_checkpoint
from tritonlab.errors import TritonLabError
from tritonlab.progress import progress_rows

FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
DEAD_SERVER = ServerInfo("http://127.0.0.1:9")  # nothing listens on the discard port


def sparse(path: Path, size: int, head: bytes = b"") -> None:
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(size)


DAMAGE = {
    "binary": lambda p: p.write_bytes(os.urandom(2000)),
    "truncated": lambda p: p.write_text('{"lab1.metadata": {"version": "2.5'),
    "empty": lambda p: p.write_bytes(b""),
    "a_list": lambda p: p.write_text("[1, 2, 3]"),
    "wrong_shape": lambda p: p.write_text('{"lab1.metadata": 5, "lab1.x": "PASS"}'),
    "deep_nesting": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "huge_200MB": lambda p: sparse(p, 200 * 2**20, b'{"lab1.metadata": {"status": "PASS"'),
    "a_folder": lambda p: p.mkdir(),
    "link_loop": lambda p: p.symlink_to(p.name),
}


def damaged_workspace(root: Path, kind: str) -> Path:
    workspace = root / "ws"
    (workspace / store.STATE_DIR).mkdir(parents=True)
    for name in ("submissions.json", "progress.json"):
        DAMAGE[kind](workspace / store.STATE_DIR / name)
    return workspace


def kept(workspace: Path, before: dict) -> bool:
    """Every damaged state file is still there: unchanged at its place, or renamed aside with the same content."""
    after = tree_digest(workspace)
    for path, entry in before.items():
        if after.get(path) == entry:
            continue
        aside = [a for p, a in after.items() if p.startswith(path + ".damaged-")]
        if not any(a[0] == entry[0] and a[2:] == entry[2:] for a in aside) and not (
            entry[0] == "link" and any(a == entry for a in aside)
        ):
            return False
    return True


def in_process(*args: str):
    """The same command through typer's runner in this process (a subprocess per case would cost seconds each):
    a traceback there is an exception the runner catches, so assert on it too."""
    from typer.testing import CliRunner

    from tritonlab.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize("kind", DAMAGE)
def test_check_cli_with_damaged_state_files(tmp_path, kind):
    workspace = damaged_workspace(tmp_path, kind)
    before = tree_digest(workspace)
    cli = run_cli if kind in ("binary", "huge_200MB") else in_process  # two as real processes: exit code, stderr
    result = cli("check", "lab1", "--workspace", str(workspace))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "0/6 checkpoints pass" in result.stdout, result.stdout  # every checkpoint judged (no server: FAIL)
    assert kept(workspace, before), (before, tree_digest(workspace))
    if tree_digest(workspace) != before:  # progress.json was set aside to record the new results: said so
        assert "was damaged" in result.stderr and "kept as progress.json.damaged-" in result.stderr
    if kind in ("binary", "wrong_shape"):  # progress reads the same files (in-process for every kind below)
        progress = run_cli("progress", "--workspace", str(workspace), "--json")
        assert progress.returncode == 0 and {r["id"] for r in json.loads(progress.stdout)} >= {"lab1.metadata"}
    assert {r["id"] for r in progress_rows(workspace)} >= {"lab1.metadata"}


@pytest.mark.parametrize("kind", ["link_loop", "a_file", "missing"])
def test_check_cli_refuses_a_workspace_that_is_not_a_folder(tmp_path, kind):
    workspace = tmp_path / "ws"
    if kind == "link_loop":
        workspace.symlink_to(workspace.name)
    elif kind == "a_file":
        workspace.write_text("notes")
    before = tree_digest(tmp_path)
    for command in (["check", "lab1"], ["progress"]):
        result = run_cli(*command, "--workspace", str(workspace))
        if command[0] == "progress" and kind == "missing":
            assert result.returncode == 0  # nothing recorded there yet: every checkpoint NOT RUN
            continue
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert "error:" in result.stderr and "fix:" in result.stderr and str(workspace.name) in result.stderr
    assert tree_digest(tmp_path) == before  # a mistyped workspace is not created


def test_notebook_check_and_grade_report_an_unusable_workspace(tmp_path):
    workspace = tmp_path / "notes.txt"
    workspace.write_text("not a folder")
    result = check("lab1.metadata", workspace=workspace, version="2.51.0")
    assert result.status == Status.ERROR and "is a file, not a folder" in result.message and result.hint
    with pytest.raises(AssertionError, match=r"ERROR: lab1.metadata: the workspace .* is a file"):
        grade("lab1.metadata", workspace=workspace, version="2.51.0")
    assert workspace.read_text() == "not a folder"
    with pytest.raises(TritonLabError, match="lab9"):  # an unknown id is still the learner's error to fix
        check("lab9.x", workspace=workspace, version=1)


@pytest.mark.parametrize("kind", ["binary", "wrong_shape", "a_folder", "link_loop"])
def test_notebook_check_keeps_damaged_submissions_and_saves_the_new_values(tmp_path, kind):
    workspace = damaged_workspace(tmp_path, kind)
    before = tree_digest(workspace)
    result = check("lab1.metadata", workspace=workspace, version="2.51.0", extensions=["a"])
    assert result.status == Status.FAIL and "no running Triton server" in result.message  # judged, not crashed
    assert kept(workspace, before)
    assert store.load_submissions(workspace)["lab1.metadata"]["version"] == "2.51.0"


NOBODY_CHECK = """
import sys
from tritonlab.checks import check
result = check("lab1.metadata", workspace=sys.argv[1], version="2.51.0")
print(result.status, result.message, "|", result.hint)
"""


def test_permissions_as_an_unprivileged_user(public_tmp):
    """A real permission error (CI runs as root): the CLI and check() as user nobody."""
    env = {"TRITONLAB_CACHE_DIR": str(public_tmp / "cache")}
    closed = public_tmp / "closed"  # root's, 0755: nobody may read but not write
    (closed / store.STATE_DIR).mkdir(parents=True)
    (closed / store.STATE_DIR / "progress.json").write_text('{"lab1.metadata": {"status": "PASS"}}')
    (closed / store.STATE_DIR / "submissions.json").write_text('{"lab1.metadata": {"version": "1"}}')
    (closed / store.STATE_DIR / "submissions.json").chmod(0o600)  # unreadable for nobody
    before = tree_digest(closed)
    result = run_cli("check", "lab1", "--workspace", str(closed), as_nobody=True, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "cannot write" in result.stderr and "Permission denied" in result.stderr and "fix:" in result.stderr
    progress = run_cli("progress", "--workspace", str(closed), as_nobody=True, env=env)
    assert progress.returncode == 0 and "lab1.metadata" in progress.stdout
    notebook = subprocess.run([*AS_NOBODY, sys.executable, "-c", NOBODY_CHECK, str(closed)], capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=120)  # fmt: skip
    assert notebook.stdout.startswith("ERROR cannot write") and "Permission denied" in notebook.stdout, notebook
    assert tree_digest(closed) == before


# ---------------------------------------------------------------------------------------------- fuzzing
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)  # fmt: skip
ROW = {
    "tool": st.sampled_from(["builtin", "perf_analyzer"]), "protocol": st.sampled_from(["http", "grpc"]),
    "model": st.sampled_from(["text_classifier", "classifier", "mystery_a", "mystery_b"]),
    "label": st.sampled_from(["before", "after", "naive transformers pipeline", "b8", ""]),
    "concurrency": st.sampled_from([16, 1, None]), "request_rate": st.none(),
    "throughput": st.floats(0, 1e4), "p50_ms": st.floats(0, 50), "p90_ms": st.floats(0, 100),
    "p95_ms": st.floats(0, 100), "p99_ms": st.floats(0, 200), "avg_ms": st.floats(0, 50),
    "requests": st.integers(0, 10**6), "errors": st.integers(0, 5), "window_s": st.floats(0.01, 10),
    "batch_size": st.integers(1, 8),
    "server_stats": st.one_of(st.none(), st.fixed_dictionaries({
        "before": st.dictionaries(st.sampled_from(["success_count", "execution_count", "inference_count",
                                                   "last_inference", "batch_stats"]), VALUES, max_size=5),
        "after": st.dictionaries(st.sampled_from(["success_count", "execution_count", "inference_count",
                                                  "last_inference", "batch_stats"]), VALUES, max_size=5),
        "read_s": st.one_of(st.none(), st.lists(VALUES, max_size=2))})),
    "config": st.one_of(st.none(), st.dictionaries(st.sampled_from(["name", "batching", "instances",
                        "max_queue_delay_us", "preferred_batch_size", "pad_to", "fail_every", "zzz"]), VALUES)),
}  # fmt: skip
# A row as a measurement writes it, with some fields replaced by any JSON value or left out.
ROWS = st.lists(
    st.fixed_dictionaries({}, optional={k: st.one_of(v, VALUES) if k != "tool" else v for k, v in ROW.items()})
    | st.fixed_dictionaries({k: v for k, v in ROW.items()}),
    max_size=6,
)
RESULTS = st.one_of(
    st.builds(lambda rows: json.dumps({"format": "tritonlab.bench/1", "rows": rows}), ROWS),
    st.builds(json.dumps, st.recursive(VALUES, lambda inner: st.lists(inner, max_size=3)
                                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10)),
    st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)  # fmt: skip


def _finite(data: str) -> str:
    return data.replace("NaN", "0").replace("Infinity", "1") if "NaN" in data or "Infinity" in data else data


@settings(FUZZ, max_examples=200)
@given(text=RESULTS)
def test_fuzzed_results_files_load_or_say_why(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("results") / "lab3_results.json"
    path.write_text(text, errors="surrogatepass")
    try:
        table = BenchTable.load(path)
    except TritonLabError as e:
        assert str(path) in e.message and e.fix
        return
    for row in table:  # a loaded row is one every reader can use
        assert isinstance(row.throughput, int | float) and not math.isnan(row.throughput)
        row.inconsistency(), row.server_batch_sizes, row.server_avg_batch, row.server_avg_queue_ms
    str(table)


READERS = ["lab3.benchmark_consistent", "lab3.slo_choice", "lab3.naive_baseline", "lab4.fixes"]
SUBMITTED = {"lab3.slo_choice": {"slo_p99_ms": 100.0, "chosen": "b8"}, "lab3.naive_baseline": {"speedup": 2.0},
             "lab4.fixes": {"speedup": {"mystery_a": 1.0, "mystery_b": 1.0}}}  # fmt: skip


COUNTERS = st.fixed_dictionaries(
    {k: st.integers(0, 10**4) for k in ("success_count", "execution_count", "inference_count", "last_inference")},
    optional={"batch_stats": st.dictionaries(st.sampled_from(["1", "4", "8"]), st.integers(0, 99), max_size=2)},
)
CONFIGS = st.one_of(
    st.none(),
    st.fixed_dictionaries({"name": st.sampled_from(["b8", "before", "after"])}, optional={
        "max_queue_delay_us": st.one_of(st.none(), st.integers(0, 1000)), "instances": st.integers(1, 2),
        "preferred_batch_size": st.lists(st.integers(1, 8), max_size=2), "batching": st.booleans(),
        "pad_to": st.integers(0, 64), "fail_every": st.integers(0, 3)}),
    st.dictionaries(st.sampled_from(["name", "zzz", "instances", "batching"]), VALUES, max_size=3),
)  # fmt: skip
# Rows as the lab's cells write them, with the models and labels each checkpoint looks for, ordered percentiles,
# zero and extreme figures, configs a cell would write and configs none would.
VOCABULARY = {
    "lab3.benchmark_consistent": (["classifier"], ["b8", "no batching"]),
    "lab3.slo_choice": (["classifier"], ["b8", "no batching"]),
    "lab3.naive_baseline": (["text_classifier"], ["naive transformers pipeline", "b8"]),
    "lab4.fixes": (["mystery_a", "mystery_b"], ["before", "after"]),
}


LATENCIES = ("avg_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms")


def plausible(checkpoint: str) -> st.SearchStrategy[str]:
    models, labels = VOCABULARY[checkpoint]
    latencies = st.lists(st.floats(0, 500), min_size=5, max_size=5).map(sorted)
    row = st.builds(
        lambda fields, lat: {**fields, **dict(zip(LATENCIES, lat, strict=True))},
        st.fixed_dictionaries({
            **ROW, "model": st.sampled_from(models), "label": st.sampled_from(labels),
            "concurrency": st.sampled_from([16, 16, 1]), "throughput": st.sampled_from([0.0, 1.0, 250.0, 1e9]),
            "requests": st.sampled_from([0, 1, 100]), "tool": st.sampled_from(["perf_analyzer", "builtin"]),
            "server_stats": st.one_of(st.none(), st.fixed_dictionaries(
                {"before": COUNTERS, "after": COUNTERS}, optional={"read_s": st.lists(st.floats(0, 1), max_size=2)})),
            "config": CONFIGS,
        }),
        latencies,
    )  # fmt: skip
    return st.lists(row, min_size=1, max_size=6).map(lambda rows: json.dumps({"rows": rows}))


PLAUSIBLE = {checkpoint: plausible(checkpoint) for checkpoint in READERS}
CASES = st.sampled_from(READERS).flatmap(
    lambda cp: st.tuples(st.just(cp), st.one_of(PLAUSIBLE[cp], PLAUSIBLE[cp], RESULTS))
)


@settings(FUZZ, max_examples=300)
@given(case=CASES)
def test_checkpoints_judge_fuzzed_results_files_never_crash(tmp_path_factory, case):
    checkpoint, text = case
    workspace = tmp_path_factory.mktemp("ws")
    name = "lab4_results.json" if checkpoint.startswith("lab4") else "lab3_results.json"
    (workspace / name).write_text(text, errors="surrogatepass")
    (cp,) = resolve(checkpoint)
    ctx = Context(workspace, DEAD_SERVER, submissions={checkpoint: SUBMITTED.get(checkpoint, {})})
    result = run_checkpoint(cp, ctx)
    assert result.status in (Status.FAIL, Status.UNATTEMPTED), result.message  # ERROR would be a crash in a check
    assert result.message


@settings(FUZZ, max_examples=150)
@given(raw=st.one_of(st.binary(max_size=80), RESULTS.map(lambda t: t.encode(errors="surrogatepass"))))
def test_fuzzed_state_files_never_crash_and_are_never_lost(tmp_path_factory, raw):
    workspace = tmp_path_factory.mktemp("ws")
    state = workspace / store.STATE_DIR
    state.mkdir()
    for name in ("progress.json", "submissions.json"):
        (state / name).write_bytes(raw)
    assert isinstance(store.load_progress(workspace), dict)
    old = store.load_submissions(workspace)
    assert len(progress_rows(workspace)) == sum(len(resolve(f"lab{n}")) for n in range(1, 6))
    store.save_submission(workspace, "lab1.metadata", {"version": "x"})
    new = store.load_submissions(workspace)
    assert new["lab1.metadata"]["version"] == "x"
    if old:  # it was a valid file: its entries are kept, merged with the new values
        assert all(new[k] == v for k, v in old.items() if k != "lab1.metadata")
    else:  # damaged (or empty): renamed aside, byte for byte, before the new values were written
        kept_raw = [p.read_bytes() for p in state.iterdir() if p.name.startswith("submissions.json")]
        assert raw in kept_raw or json.loads(raw) == {}
    ctx = Context(workspace, None)
    try:
        ctx.read_json(f"{store.STATE_DIR}/progress.json")
    except Fail as e:
        assert "progress.json" in str(e)
