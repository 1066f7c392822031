"""``python -I -m tritonlab.checks run ID|LAB ... --workspace DIR [--server URL] --json``: the isolated checker."""

from __future__ import annotations

import argparse
import json
import sys

from tritonlab.checks.core import ServerInfo
from tritonlab.checks.runner import evaluate, state_problem
from tritonlab.checks.store import workspace_dir
from tritonlab.errors import TritonLabError


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
    args = parser.parse_args(argv)
    server = ServerInfo(args.server, args.grpc, args.metrics) if args.server else None
    try:
        results = evaluate(args.selectors, workspace_dir(args.workspace), server, record=not args.no_record)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except TritonLabError as e:  # the workspace cannot be used: every checkpoint says why, with the fix
        results = state_problem(args.selectors, e)
    if args.json:
        print(json.dumps([r.as_dict() for r in results]))
    else:
        for r in results:
            print(f"{r.status:<11} {r.id}: {r.message}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
