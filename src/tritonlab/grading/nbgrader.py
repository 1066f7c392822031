"""nbgrader preprocessors and configuration.

``ExecuteWithCheckpoints`` is nbgrader's ``Execute`` plus one step: after each autograded test cell runs, the
checkpoints it names (``grade("lab1.server_ready")``) are judged again by a fresh, isolated Python outside the
learner's kernel, against the server that kernel started (found through the kernel's own child processes).
The cell's outputs are then replaced by that verdict, so nothing the learner's kernel prints, patches or
overrides (``check``, tritonlab modules, ``showtraceback``, stderr warnings) can change the grade.

When ``tritonlab grade`` runs it, the kernel starts in a box (``sandbox``) and the checker runs under the box's
second uid; only a tritonserver running the grader's staged binary counts as the learner's server; a cell whose
kernel dies or ignores the interrupt after its timeout costs that cell only (a fresh kernel runs the rest); and
once the notebook has run, everything of the box is killed and the workspace is the grader's again before
nbgrader writes anything.
"""

from __future__ import annotations

import ast
import contextlib
import ipaddress
import json
import os
import secrets
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute

from tritonlab.checks import store
from tritonlab.checks import values as values_module
from tritonlab.checks.core import CHECKPOINTS, Result, ServerInfo, Status, load_all
from tritonlab.checks.render import card_html, card_text
from tritonlab.checks.runner import checker_command, read_verdict, run_isolated, server_of_process, verdict_file
from tritonlab.grading import sandbox


@dataclass(frozen=True)
class GradeCall:
    checkpoint_id: str
    values: dict[str, str]  # keyword -> source of the expression the learner's kernel evaluates


def grade_calls(source: str) -> list[GradeCall]:
    """The ``grade("id", name=expr, ...)`` calls in a test cell, in order (hidden tests included)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name != "grade" or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        values = {
            kw.arg: ast.get_source_segment(source, kw.value) or ""
            for kw in node.keywords
            if kw.arg and kw.arg not in ("server", "workspace")
        }
        calls.append(GradeCall(str(node.args[0].value), values))
    return sorted(calls, key=lambda c: source.find(c.checkpoint_id))


def checkpoint_ids(source: str) -> list[str]:
    return list(dict.fromkeys(c.checkpoint_id for c in grade_calls(source)))


# The encoder travels as source and is executed in a fresh namespace inside the kernel: a learner who patched
# tritonlab.checks.values there cannot change how their values are read.
_ENCODER = (
    Path(values_module.__file__).read_text()
    + "\nimport json as _json\n_encode_json = lambda v: _json.dumps(encode(v))\n"
)


def _extraction_expression(expression: str) -> str:
    return f"(lambda __ns: (exec({_ENCODER!r}, __ns), __ns['_encode_json'](({expression}))))({{}})[1]"


async def kernel_values(client: Any, call: GradeCall) -> dict[str, Any]:
    """Evaluate the call's value expressions in the kernel; return {name: encoded value} for those that worked."""
    if not call.values:
        return {}
    expressions = {name: _extraction_expression(expr) for name, expr in call.values.items()}
    msg_id = client.kc.execute("pass", silent=True, store_history=False, user_expressions=expressions)
    reply = await client.async_wait_for_reply(msg_id)
    found = {}
    for name, outcome in (reply or {}).get("content", {}).get("user_expressions", {}).items():
        if outcome.get("status") == "ok":
            with contextlib.suppress(ValueError, SyntaxError, json.JSONDecodeError):
                found[name] = json.loads(ast.literal_eval(outcome["data"]["text/plain"]))
    return found


async def judge_cell(client: Any, cell: Any, workspace: Path) -> list[Result]:
    """Out-of-kernel verdicts for an autograded test cell (empty if it is not one or names no checkpoint)."""
    if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
        return []
    calls = grade_calls(cell.source)
    if not calls:
        return []
    box = sandbox.Box.current()
    for call in calls:
        if call.values:
            # Only what the locked cell's own expressions evaluate to counts, whatever the kernel wrote before.
            values = await kernel_values(client, call)
            if box is not None and box.uid is not None:
                save_submission_nofollow(workspace, call.checkpoint_id, values, owner=box.uid)
            else:
                store.save_submission(workspace, call.checkpoint_id, values, replace=True)
    kernel_pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
    ids = list(dict.fromkeys(c.checkpoint_id for c in calls))
    if box is None:
        return run_isolated(ids, workspace, server_of_process(kernel_pid) if kernel_pid else None)
    return judge_in_box(box, ids, workspace, box_server(box, kernel_pid) if kernel_pid else None)


# ---------------------------------------------------------------------------------------------- in a box
def save_submission_nofollow(workspace: Path, checkpoint_id: str, values: dict[str, Any],
                             owner: int | None = None) -> None:  # fmt: skip
    """store.save_submission for a workspace a hostile kernel owns, written by root: relative to open folder
    descriptors, never following a link (a link planted at the temporary file would redirect root's write)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    ws = os.open(workspace, flags)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(store.STATE_DIR, 0o755, dir_fd=ws)
        state = os.open(store.STATE_DIR, flags, dir_fd=ws)
        if owner is not None and os.fstat(state).st_uid == 0:
            os.fchown(state, owner, owner)  # made by root just now: the kernel's own check() must write there too
    except OSError:
        os.close(ws)
        return  # the kernel put something else there: no values, the checkpoint fails on its own
    try:
        data: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            fd = os.open("submissions.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=state)
            with os.fdopen(fd, "rb") as handle:
                if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    loaded = json.loads(handle.read(16 * 2**20))
                    data = loaded if isinstance(loaded, dict) else {}
        data[checkpoint_id] = dict(values)
        tmp = f".submissions.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=state)
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(data, indent=1))
            os.replace(tmp, "submissions.json", src_dir_fd=state, dst_dir_fd=state)
        except OSError:  # e.g. the kernel made submissions.json a folder: this checkpoint fails, not the notebook
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=state)
    finally:
        os.close(state)
        os.close(ws)


_SERVER_FLAGS = ("--http-port", "--grpc-port", "--metrics-port", "--http-address", "--grpc-address",
                 "--metrics-address", "--allow-http", "--allow-grpc", "--allow-metrics")  # fmt: skip


def _server_flags(cmdline: list[str]) -> dict[str, str] | None:
    """The endpoint flags of a tritonserver command line, or None when one is repeated or written as two words:
    which value Triton took would then be a guess."""
    flags: dict[str, str] = {}
    for arg in cmdline[1:]:
        name, equals, value = arg.partition("=")
        if name in _SERVER_FLAGS:
            if not equals or name in flags:
                return None
            flags[name] = value
    return flags


def _listening(process: psutil.Process) -> set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """The (address, port) pairs ``process`` itself listens on (gRPC binds 127.0.0.1 as ::ffff:127.0.0.1)."""
    found = set()
    for conn in process.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN:
            bound = ipaddress.ip_address(conn.laddr.ip)
            found.add((getattr(bound, "ipv4_mapped", None) or bound, conn.laddr.port))
    return found


def _listens_on(listening: set, host: str, port: str) -> bool:
    """Whether host:port is among ``listening`` (a wildcard bind covers every address)."""
    try:
        wanted = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        return False  # a name could resolve anywhere: only an address the socket table can confirm counts
    return any(p == number and (a == wanted or a.is_unspecified) for a, p in listening)


def box_server(box: sandbox.Box, kernel_pid: int) -> ServerInfo | None:
    """The newest Triton the kernel started, counting only processes that run the grader's staged binary (in the
    box's cache, which the box cannot write): a process the kernel merely names "tritonserver" is not a server.
    Its command line only says where to look: each endpoint must be a socket that very process listens on, so
    ``--allow-http=false`` plus a look-alike on that port answers nothing."""
    staged = (box.cache / "tritonserver").resolve()
    servers = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(kernel_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error, ValueError):
                if staged in Path(child.exe()).resolve().parents:
                    servers.append(child)
    for child in sorted(servers, key=lambda c: c.create_time(), reverse=True):
        with contextlib.suppress(psutil.Error):
            flags = _server_flags(child.cmdline())
            if flags is None or "--http-port" not in flags:
                continue
            http_host = flags.get("--http-address", "127.0.0.1")
            listening = _listening(child)
            if not _listens_on(listening, http_host, flags["--http-port"]):
                continue
            urls = {}
            for kind, scheme, suffix in (("grpc", "grpc", ""), ("metrics", "http", "/metrics")):
                host, port = flags.get(f"--{kind}-address", http_host), flags.get(f"--{kind}-port")
                served = port and _listens_on(listening, host, port)
                urls[kind] = f"{scheme}://{host}:{port}{suffix}" if served else None
            return ServerInfo(f"http://{http_host}:{flags['--http-port']}", urls["grpc"], urls["metrics"])
    return None


def judge_in_box(box: sandbox.Box, ids: list[str], workspace: Path, server: ServerInfo | None) -> list[Result]:
    """The isolated checker, as the box's checker user: it reads the workspace with no more rights than the
    learner has, writes nothing there, and the kernel's user can neither signal nor trace it. Its verdict comes
    back on a descriptor of its own, which the learner functions it calls (in workers) never hold."""
    env = {**os.environ, "TRITONLAB_CACHE_DIR": str(box.cache), "HOME": str(box.cache), "TMPDIR": "/tmp"}
    sandbox.clear_checker(box)
    with verdict_file() as verdict:
        cmd = checker_command(ids, workspace, server, verdict.fileno(), record=False)
        try:
            proc = subprocess.run(sandbox.wrap(cmd, role="checker"), capture_output=True, text=True, timeout=180,
                                  stdin=subprocess.DEVNULL, cwd="/", env=env, pass_fds=(verdict.fileno(),))  # fmt: skip
            return read_verdict(verdict)
        except (subprocess.TimeoutExpired, KeyError, TypeError, ValueError) as e:
            detail = "timed out" if isinstance(e, subprocess.TimeoutExpired) else (
                (proc.stderr.strip().splitlines() or ["no output"])[-1])  # fmt: skip
        finally:
            sandbox.clear_checker(box)  # what its workers left (a setsid daemon escapes their session)
    load_all()
    return [Result(id=i, title=CHECKPOINTS[i].title if i in CHECKPOINTS else i, status=Status.ERROR,
                   message=f"the checker process failed: {detail}", hint="",
                   points=CHECKPOINTS[i].points if i in CHECKPOINTS else 0.0, awarded=0.0, seconds=0.0)
            for i in ids]  # fmt: skip


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside the grading box (see ``sandbox``) when this process grades in one."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = super().format_kernel_cmd(extra_arguments)
        return sandbox.wrap(command) if sandbox.Box.current() is not None else command


def verdict_outputs(results: list[Result]) -> list[NotebookNode]:
    """Outputs nbgrader scores as: all pass -> full credit; some -> partial (points as a float); none -> 0."""
    html = "".join(card_html(r) for r in results)
    text = "\n".join(card_text(r) for r in results)
    outputs = [NotebookNode(output_type="display_data", metadata={}, data={"text/html": html, "text/plain": text})]
    awarded = sum(r.awarded for r in results)
    if all(r.passed for r in results):
        return outputs
    if awarded > 0:
        outputs.append(NotebookNode(output_type="execute_result", execution_count=None, metadata={},
                                    data={"text/plain": repr(float(awarded))}))  # fmt: skip
        return outputs
    failed = [r for r in results if not r.passed]
    outputs.append(
        NotebookNode(
            output_type="error",
            ename="CheckpointFailed",
            evalue="; ".join(f"{r.id}: {r.status}" for r in failed),
            traceback=[f"CheckpointFailed: {r.id} {r.status}: {r.message}" for r in failed],
        )
    )
    return outputs


class ExecuteWithCheckpoints(Execute):
    """nbgrader's Execute, with autograded checkpoint cells re-judged outside the kernel (in a box, if grading)."""

    max_kernel_restarts = 5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["kernel_manager_class"] = SandboxedKernelManager
        super().__init__(*args, **kwargs)
        self.kernel_restarts = 0

    async def async_execute_cell(self, cell: Any, cell_index: int, execution_count: int | None = None,
                                 store_history: bool = True) -> Any:  # fmt: skip
        """A kernel that dies in a cell (its memory limit, ``os._exit``, a signal) or that ignores the interrupt
        after the cell timeout costs that cell: it gets the error, a fresh kernel runs the cells after it, and what
        the notebook earned before still counts (nbgrader alone would fail the whole notebook)."""
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except (DeadKernelError, CellTimeoutError) as e:
            self.kernel_restarts += 1
            if self.kernel_restarts > self.max_kernel_restarts:
                raise
            what = (
                "the kernel died during this cell (out of memory, os._exit or a signal)"
                if isinstance(e, DeadKernelError)
                else f"the cell still ran {self.timeout} s after it started and ignored the interrupt"
            )
            self.log.warning("cell %s: %s; restarting the kernel", cell_index, what)
            cell.outputs.append(NotebookNode(output_type="error", ename="KernelRestarted", evalue=what,
                                             traceback=[f"KernelRestarted: {what}; the cells after it ran in a new "
                                                        "kernel"]))  # fmt: skip
            await self._fresh_kernel()
            return cell

    async def _fresh_kernel(self) -> None:
        """Replace the stuck or dead kernel: new ports (the old ones were free for other processes to take while
        it died) and a new client for them; a second try if the first new kernel does not come up."""
        for attempt in (1, 2):
            with contextlib.suppress(Exception):  # the old client's channels may already be closed
                await ensure_async(self.kc.stop_channels())
            # Forget the old ports: the kernel's connection file is rewritten with new ones on restart
            # (restart_kernel's newports does nothing for ports jupyter_client cached).
            self.km.cleanup_connection_file()
            for name in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port"):
                setattr(self.km, name, 0)
            try:
                await ensure_async(self.km.restart_kernel(now=True))
                self.kc = self.km.client()
                await ensure_async(self.kc.start_channels())
                await ensure_async(self.kc.wait_for_ready(timeout=self.startup_timeout))
                self.kc.allow_stdin = False
                return
            except RuntimeError as e:  # jupyter_client: "Kernel died before replying" / "didn't respond"
                self.log.warning("the new kernel did not come up (attempt %d): %s", attempt, e)
                if attempt == 2:
                    raise

    execute_cell = run_sync(async_execute_cell)  # nbconvert calls this one (nbclient binds its own at class level)

    def preprocess(self, nb: Any, resources: Any, retries: Any = None) -> Any:
        try:
            return super().preprocess(nb, resources, retries)
        finally:
            box = sandbox.Box.current()
            if box is not None:
                # Before nbgrader writes anything: nothing of the box runs on (a fork that outlived its kernel could
                # plant a link where the graded notebook is written), and the workspace is the grader's again.
                sandbox.close_box(box, remove_cgroup=False)
                workspace = Path(resources.get("metadata", {}).get("path") or ".").resolve()
                removed = sandbox.lock_down(box, workspace)
                if removed:
                    self.log.warning("removed from the workspace (links and special files): %s", ", ".join(removed))

    async def on_cell_executed(self, **kwargs: Any) -> None:
        super().on_cell_executed(**kwargs)
        cell = kwargs["cell"]
        workspace = Path(self.resources.get("metadata", {}).get("path") or ".").resolve()
        results = await judge_cell(self, cell, workspace)
        if results:
            cell.outputs = verdict_outputs(results)
            self.log.info("checkpoints: %s", ", ".join(f"{r.id} {r.status}" for r in results))


def configure(c: Any, cell_timeout: int = 120) -> None:
    """Apply tritonlab's nbgrader settings to a traitlets config object ``c``."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearHiddenTests,
        GetGrades,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )  # fmt: skip

    c.Autograde.autograde_preprocessors = [
        ExecuteWithCheckpoints, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata,
    ]  # fmt: skip
    c.ExecuteWithCheckpoints.timeout = cell_timeout
    c.ExecuteWithCheckpoints.interrupt_on_timeout = True
    # Feedback goes to learners: no hidden test source in it.
    c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
