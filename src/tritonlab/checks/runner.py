"""Evaluate checkpoints, in this process or (for anything a grade depends on) in a fresh isolated Python.

``run_isolated`` starts ``python -I -m tritonlab.checks run ...``: a new interpreter that ignores the notebook's
cwd, PYTHONPATH and user site, so a learner who redefines ``check``, patches tritonlab modules or overrides
``showtraceback`` in their kernel cannot change the verdict. The verdict comes back through a file on a descriptor
of its own (``--verdict-fd``), never stdout: learner functions run in workers that hold neither (``learner``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

import psutil

from tritonlab.checks import store
from tritonlab.checks.core import Context, Result, ServerInfo, Status, resolve, run_checkpoint
from tritonlab.errors import DiskFull, TritonLabError


def evaluate(selectors: list[str], workspace: Path, server: ServerInfo | None, record: bool = True) -> list[Result]:
    checkpoints = [cp for selector in selectors for cp in resolve(selector)]
    ctx = Context(workspace=workspace, server=server, submissions=store.load_submissions(workspace))
    results = [run_checkpoint(cp, ctx) for cp in checkpoints]
    if record:
        try:
            store.record_results(workspace, results)
        except DiskFull as e:  # the verdicts stand; only the progress history could not be saved
            for result in results:
                result.message += f" (not saved to your progress: {e.message} Fix: {e.fix})"
    return results


def state_problem(selectors: list[str], error: TritonLabError) -> list[Result]:
    """An ERROR result for each checkpoint when the workspace itself cannot be used (it names the file and the fix)."""
    return [
        Result(id=cp.id, title=cp.title, status=Status.ERROR, message=error.message, hint=error.fix or "",
               points=cp.points, awarded=0.0, seconds=0.0)
        for selector in selectors for cp in resolve(selector)
    ]  # fmt: skip


def checker_command(
    selectors: list[str], workspace: Path, server: ServerInfo | None, verdict_fd: int, record: bool = True
) -> list[str]:
    """The isolated checker's command line; it writes its verdict to ``verdict_fd`` (see ``verdict_file``)."""
    cmd = [sys.executable, "-I", "-m", "tritonlab.checks", "run", *selectors, "--workspace", str(workspace),
           "--verdict-fd", str(verdict_fd)] + ([] if record else ["--no-record"])  # fmt: skip
    if server is not None:
        cmd += ["--server", server.http_url]
        cmd += ["--grpc", server.grpc_url] if server.grpc_url else []
        cmd += ["--metrics", server.metrics_url] if server.metrics_url else []
    return cmd


def verdict_file() -> IO[bytes]:
    """An unlinked temporary file for the checker's verdict: pass its fileno() to ``subprocess.run(pass_fds=...)``.
    A file, not a pipe, so a long verdict cannot fill it while nobody reads."""
    return tempfile.TemporaryFile()


def read_verdict(verdict: IO[bytes]) -> list[Result]:
    """The results the checker wrote (raises ValueError, KeyError or TypeError if it wrote none or garbage)."""
    verdict.seek(0)
    return [Result.from_dict(d) for d in json.loads(verdict.read())]


def run_isolated(
    selectors: list[str], workspace: Path, server: ServerInfo | None, timeout: float = 180.0
) -> list[Result]:
    try:
        checkpoints = [cp for selector in selectors for cp in resolve(selector)]
    except KeyError as e:
        raise TritonLabError(e.args[0], fix="check the id: `tritonlab progress` lists every checkpoint") from None
    with verdict_file() as verdict:
        cmd = checker_command(selectors, workspace, server, verdict.fileno())
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  pass_fds=(verdict.fileno(),))  # fmt: skip
            return read_verdict(verdict)
        except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as e:
            detail = f"timed out after {timeout:.0f} s" if isinstance(e, subprocess.TimeoutExpired) else (
                (proc.stderr.strip().splitlines() or ["no output"])[-1])  # fmt: skip
            return [
                Result(id=cp.id, title=cp.title, status=Status.ERROR, message=f"the checker process failed: {detail}",
                       hint="", points=cp.points, awarded=0.0, seconds=0.0)
                for cp in checkpoints
            ]  # fmt: skip


def server_of_process(pid: int) -> ServerInfo | None:
    """The newest Triton server started by process ``pid`` (a notebook kernel), read from outside that process.

    Evidence the kernel cannot fake from Python: its tritonserver child processes and their command lines;
    else the tritonlab registry entries it owns (servers that are not child processes, e.g. containers).
    """
    servers: list[tuple[float, list[str]]] = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):  # one short-lived child ending must not hide the others
                if child.name() == "tritonserver":
                    servers.append((child.create_time(), child.cmdline()))
    for _, cmdline in sorted(servers, reverse=True):
        args = dict(a.split("=", 1) for a in cmdline[1:] if a.startswith("--") and "=" in a)
        if "--http-port" in args:
            host = args.get("--http-address", "127.0.0.1")
            return ServerInfo(
                http_url=f"http://{host}:{args['--http-port']}",
                grpc_url=f"grpc://{args.get('--grpc-address', host)}:{args['--grpc-port']}"
                if "--grpc-port" in args else None,
                metrics_url=f"http://{args.get('--metrics-address', host)}:{args['--metrics-port']}/metrics"
                if "--metrics-port" in args else None,
            )  # fmt: skip
    from tritonlab.server import registry

    owned = [r for r in registry.records() if r.owner_pid == pid]
    if owned:
        newest = max(owned, key=lambda r: r.started_at)
        return ServerInfo(newest.http_url, newest.grpc_url, newest.metrics_url)
    return None


def newest_registered_server() -> ServerInfo | None:
    """For the CLI and graders without --server: the newest running server tritonlab knows of."""
    from tritonlab.server import registry

    records = registry.records()
    if not records:
        return None
    newest = max(records, key=lambda r: r.started_at)
    return ServerInfo(newest.http_url, newest.grpc_url, newest.metrics_url)
