"""``python -I -m tritonlab.checks run ID|LAB ... --workspace DIR [--server URL] [--json] [--verdict-fd N]``: the
isolated checker. Graders read its verdict from descriptor N only: stdout is for people (and old callers)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import sys

from tritonlab.checks.core import ServerInfo
from tritonlab.checks.runner import evaluate, state_problem
from tritonlab.checks.store import workspace_dir
from tritonlab.errors import TritonLabError

_PR_SET_DUMPABLE = 4


def refuse_tracing() -> None:
    """Not dumpable: a process of the same user (a learner's worker, what it left running) can neither ptrace this
    one nor open its /proc/<pid>/fd/* (the verdict's descriptor among them). Linux only; elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonlab.checks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="evaluate checkpoints and print their results")
    run.add_argument("selectors", nargs="+", help="checkpoint ids (lab1.server_ready) or labs (lab1)")
    run.add_argument("--workspace")
    run.add_argument("--server", help="HTTP URL of the learner's Triton server")
    run.add_argument("--grpc")
    run.add_argument("--metrics")
    run.add_argument("--json", action="store_true")
    run.add_argument("--no-record", action="store_true", help="leave the workspace's progress file alone")
    run.add_argument("--verdict-fd", type=int, help="write the JSON verdict to this inherited file descriptor")
    args = parser.parse_args(argv)
    if args.verdict_fd is not None:  # kept from every process this one starts (learner workers above all)
        os.set_inheritable(args.verdict_fd, False)
    server = ServerInfo(args.server, args.grpc, args.metrics) if args.server else None
    try:
        results = evaluate(args.selectors, workspace_dir(args.workspace), server, record=not args.no_record)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except TritonLabError as e:  # the workspace cannot be used: every checkpoint says why, with the fix
        results = state_problem(args.selectors, e)
    verdict = json.dumps([r.as_dict() for r in results])
    if args.verdict_fd is not None:
        with os.fdopen(args.verdict_fd, "w") as channel:
            channel.write(verdict)
    if args.json:
        print(verdict)
    else:
        for r in results:
            print(f"{r.status:<11} {r.id}: {r.message}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    refuse_tracing()  # first: before any learner code runs in a worker
    sys.exit(main())
