"""Read Triton's own words out of its log: why a model failed, why the server exited.

Triton 2.51 logs glog-style lines (``E1121 22:00:18.906826 3886 model_lifecycle.cc:642] "message"``) with the
message JSON-quoted, plus ASCII tables (the model status table printed once loading ends). A model whose
config.pbtxt does not parse never reaches the table: only a ``Poll failed for model directory`` line names it,
right after libprotobuf's line:column error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_GLOG = re.compile(r"^(?P<level>[IWEF])\d{4} [\d:.]+ +\d+ (?P<source>[\w.\-]+:\d+)\] (?P<message>.*)$")
_FAILED_LOAD = re.compile(r"^failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*)$", re.S)
_POLL_FAILED = re.compile(r"^Poll failed for model directory '(?P<model>[^']+)': (?P<reason>.*)$", re.S)
_PROTOBUF = re.compile(r"^\[libprotobuf ERROR [^\]]*\] (?P<detail>.*)$")
_TABLE_SEPARATOR = re.compile(r"^\+[-+]+\+$")


@dataclass(frozen=True)
class LogRecord:
    level: str  # I, W, E, F
    source: str  # file:line in Triton's source
    message: str


def records(log_text: str) -> list[LogRecord]:
    out = []
    for line in log_text.splitlines():
        m = _GLOG.match(line)
        if not m:
            continue
        message = m["message"]
        if message.startswith('"') and message.endswith('"'):
            try:
                message = json.loads(message)
            except json.JSONDecodeError:
                message = message[1:-1]
        out.append(LogRecord(m["level"], m["source"], message))
    return out


def tables(log_text: str) -> list[list[list[str]]]:
    """Every ASCII table in the log, as rows of cells (header row first, continuation rows merged)."""
    found: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    separators = 0
    for line in log_text.splitlines():
        line = line.rstrip()
        if _TABLE_SEPARATOR.match(line):
            if current is None:
                current, separators = [], 0
            separators += 1
            if separators == 3:  # top, below header, bottom
                found.append(current)
                current = None
            continue
        if current is not None and line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current and separators >= 2 and cells[0] == "" and len(cells) == len(current[-1]):
                # A wrapped cell continues on a row whose first column is empty.
                current[-1] = [f"{a}\n{b}".strip("\n") if b else a for a, b in zip(current[-1], cells, strict=True)]
            else:
                current.append(cells)
        elif current is not None:
            current = None  # not a table after all
    return found


def model_status_table(log_text: str) -> dict[tuple[str, str], str]:
    """The last ``Model | Version | Status`` table: {(model, version): status}."""
    result: dict[tuple[str, str], str] = {}
    for table in tables(log_text):
        if table and table[0][:3] == ["Model", "Version", "Status"]:
            result = {(row[0], row[1]): row[2] for row in table[1:] if len(row) >= 3}
    return result


def model_failures(log_text: str) -> dict[str, str]:
    """{model: Triton's reason} for every model the log says failed to load, in log order."""
    failures: dict[str, str] = {}
    previous_line = ""
    lines = log_text.splitlines()
    for index, line in enumerate(lines):
        m = _GLOG.match(line)
        if m:
            record = records(line)[0]
            if fl := _FAILED_LOAD.match(record.message):
                failures[fl["model"]] = fl["reason"].strip()
            elif pf := _POLL_FAILED.match(record.message):
                reason = pf["reason"].strip()
                proto = _PROTOBUF.match(previous_line)
                if proto:
                    reason = f"{reason}: {proto['detail']}"
                failures[pf["model"]] = reason
        previous_line = lines[index]
    # The status table has the final word (and the cleanest text) for models that reached it.
    for (model, _version), status in model_status_table(log_text).items():
        if status.startswith("UNAVAILABLE"):
            failures[model] = status
    return failures


def server_errors(log_text: str) -> list[str]:
    """Fatal server-level messages: ``error: creating server: ...`` and E/F records that are not about a model."""
    errors = [line.strip() for line in log_text.splitlines() if line.startswith("error: ")]
    for record in records(log_text):
        if record.level in "EF" and not (_FAILED_LOAD.match(record.message) or _POLL_FAILED.match(record.message)):
            errors.append(record.message)
    return errors


_BENIGN = ("CudaDriverHelper has not been initialized", "ERROR: Failed to create instance")


def significant_errors(log_text: str) -> list[str]:
    """server_errors() without the lines every CPU-only start prints."""
    return [e for e in server_errors(log_text) if not any(b in e for b in _BENIGN)]


def tail(log_text: str, lines: int = 30) -> str:
    return "\n".join(log_text.splitlines()[-lines:])


_PORT_CONFLICT = re.compile(
    r"Socket '[\d.]+:(?P<port>\d+)' already in use|[\d.]+:(?P<port2>\d+).*Address already in use"
)


def port_conflict(log_text: str) -> int | None:
    """The port Triton could not bind, if that is why it stopped."""
    for line in log_text.splitlines():
        m = _PORT_CONFLICT.search(line)
        if m:
            return int(m["port"] or m["port2"])
    return None
