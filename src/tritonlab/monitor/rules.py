"""Validate Prometheus rule files with ``promtool check rules``, Prometheus's own checker.

check_rules("lab4_alerts.yml")   # RulesError quoting promtool (file:line:column: what is wrong) if invalid
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tritonlab.errors import TritonLabError
from tritonlab.monitor.binary import find_binary

_COUNT = re.compile(r"SUCCESS: (\d+) rules found")


class RulesError(TritonLabError):
    """promtool rejected a rule file; ``problems`` holds its lines (``file: line:col: ...``)."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(
            f"{path} is not a valid Prometheus rule file:\n" + "\n".join(f"  {p}" for p in problems),
            fix=_fix_for(problems),
        )


def _fix_for(problems: list[str]) -> str:
    text = " ".join(problems)
    if "could not parse expression" in text:
        return "fix the PromQL at the line:column shown (the second position is inside the expression)"
    if "not found in type" in text:
        return "remove or rename the unknown field at the line shown (rules have alert, expr, for, labels, annotations)"
    if "yaml" in text:
        return "fix the YAML at the line shown: groups: -> - name: -> rules: -> - alert: ..., indented consistently"
    return "fix what promtool reports at the line shown"


@dataclass(frozen=True)
class RulesReport:
    path: Path
    rules: int
    output: str


def check_rules(path: str | Path) -> RulesReport:
    """Run ``promtool check rules PATH``; the number of rules if valid, else RulesError with promtool's lines."""
    path = Path(path)
    if not path.is_file():
        raise TritonLabError(f"rule file {path} does not exist", fix="write the rules first (a YAML file)")
    proc = subprocess.run([find_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        problems = [line.strip() for line in proc.stderr.splitlines() if line.strip() and line.strip() != "FAILED:"]
        raise RulesError(path, list(dict.fromkeys(problems)) or [output or f"promtool exited {proc.returncode}"])
    match = _COUNT.search(output)
    return RulesReport(path, int(match[1]) if match else 0, output)
