"""Benchmark results: one ``BenchRow`` per measured load level, a ``BenchTable`` to compare, save and plot them.

Both tools (perf_analyzer and the builtin load generator) produce the same row, so a learner can put their
figures side by side, keep them in one JSON file across sessions, and pick the best configuration under an SLO.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from tritonlab.errors import TritonLabError

FORMAT = "tritonlab.bench/1"
MAX_RESULTS_BYTES = 64 * 2**20  # thousands of rows take a few MB: a bigger file is not a results file
MAX_STATS_READ_S = 0.5  # a /stats read at a window edge slower than this leaves the request count too uncertain


@dataclass
class BenchRow:
    """One measurement: a model under one load level (a concurrency or a request rate), by one tool.

    Latencies are client-side, in milliseconds; ``throughput`` is inferences (batch elements) per second.
    ``server_stats`` holds the model's /stats counters read at the start and end of the measurement.
    """

    tool: str  # "perf_analyzer" or "builtin"
    protocol: str  # "grpc" or "http"
    model: str
    concurrency: int | None
    request_rate: float | None
    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    requests: int  # completed inside the measurement window
    errors: int
    window_s: float
    label: str = ""
    batch_size: int = 1
    server_stats: dict[str, Any] | None = None
    first_error: str | None = None
    config: dict[str, Any] | None = None  # the model configuration measured (e.g. a lab 3 Variant), if known

    # ------------------------------------------------------------------ what the server saw
    def _delta(self, key: str) -> int | None:
        if not self.server_stats:
            return None
        before, after = self.server_stats.get("before") or {}, self.server_stats.get("after") or {}
        if key not in before or key not in after:
            return None
        return int(after[key]) - int(before[key])

    @property
    def server_requests(self) -> int | None:
        """Requests the server completed during the measurement (Δ success_count)."""
        return self._delta("success_count")

    @property
    def server_avg_batch(self) -> float | None:
        """Average executed batch size (Δ inference_count / Δ execution_count): > 1 means requests were batched."""
        inferences, executions = self._delta("inference_count"), self._delta("execution_count")
        if not inferences or not executions:
            return None
        return inferences / executions

    @property
    def server_avg_queue_ms(self) -> float | None:
        """Average time a request waited in the server's queue (the price of dynamic batching)."""
        queue_ns, requests = self._delta("queue_ns"), self._delta("success_count")
        return queue_ns / requests / 1e6 if queue_ns is not None and requests else None

    @property
    def server_batch_sizes(self) -> dict[int, int]:
        """Executions per batch size during the measurement (Δ batch_stats)."""
        if not self.server_stats:
            return {}
        before = (self.server_stats.get("before") or {}).get("batch_stats", {})
        after = (self.server_stats.get("after") or {}).get("batch_stats", {})
        delta = {int(size): int(count) - int(before.get(size, 0)) for size, count in after.items()}
        return {size: count for size, count in sorted(delta.items()) if count}

    def inconsistency(self) -> str | None:
        """Why this row disagrees with itself or with the server statistics it recorded, or None if it agrees.

        The checkpoints use it to tell a measured row from an edited one: throughput must be requests x batch /
        window, percentiles ordered, and (builtin tool) the client's request count must match the server's own
        count over the same window, within what can honestly differ at its edges.
        """
        if self.throughput <= 0 or self.requests <= 0:
            return "no request completed"
        if not (self.p50_ms <= self.p90_ms <= self.p95_ms <= self.p99_ms):
            return (f"percentiles out of order (p50 {self.p50_ms}, p90 {self.p90_ms}, p95 {self.p95_ms}, "
                    f"p99 {self.p99_ms})")  # fmt: skip
        if self.tool != "builtin":
            return None  # perf_analyzer's stats cover its whole run, not only the window it reports
        if abs(self.throughput - self.requests * self.batch_size / self.window_s) > 0.01 * self.throughput + 0.5:
            return (f"throughput {self.throughput:.1f}/s is not requests x batch / window = "
                    f"{self.requests} x {self.batch_size} / {self.window_s:.2f} s")  # fmt: skip
        if self.server_stats is not None:
            served = self.server_requests
            # Requests finished by the server but not yet seen by the client, at either edge of the window; and
            # those finishing while a /stats read was under way (each edge is the read's midpoint: half its length
            # either side). A read slower than MAX_STATS_READ_S makes the row unusable rather than the slack wide.
            reads = self.server_stats.get("read_s") or [0.0, 0.0]
            if max(reads) > MAX_STATS_READ_S:
                return f"a server statistics read took {max(reads):.2f} s (the machine was overloaded): measure again"
            slack = (
                2 * (self.concurrency or 0) + 2 + 0.01 * self.requests + self.requests / self.window_s * sum(reads) / 2
            )
            if served is None or abs(served - self.requests) > slack:  # Triton counts requests, whatever their batch
                return f"the client counted {self.requests} requests, the server {served} in the same window"
        return None

    @property
    def load(self) -> str:
        """The load level in words: "c=8" or "r=200/s"."""
        if self.concurrency is not None:
            return f"c={self.concurrency}"
        if self.request_rate is not None:
            return f"r={self.request_rate:g}/s"
        return "?"

    # ------------------------------------------------------------------ JSON
    _NUMBERS = ("throughput", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms", "window_s")
    _INTEGERS = ("requests", "errors", "batch_size")
    _STRINGS = ("tool", "protocol", "model", "label")

    def _check_types(self) -> None:
        """A row read from a file holds what a measurement writes (a hand-edited or damaged file fails here, with
        the field named, instead of deep inside a checkpoint)."""

        def number(value: Any, integer: bool = False) -> bool:
            kinds = int if integer else (int, float)
            return isinstance(value, kinds) and not isinstance(value, bool) and value == value  # not NaN

        def counters(snapshot: Any) -> bool:
            if not isinstance(snapshot, dict):
                return False
            sizes = snapshot.get("batch_stats", {})
            return (all(number(v) for k, v in snapshot.items() if k != "batch_stats") and isinstance(sizes, dict)
                    and all(str(k).isdigit() and number(v) for k, v in sizes.items()))  # fmt: skip

        problems = [f"{n} is {getattr(self, n)!r}, not a number" for n in self._NUMBERS if not number(getattr(self, n))]
        problems += [f"{n} is {getattr(self, n)!r}, not a whole number" for n in self._INTEGERS
                     if not number(getattr(self, n), integer=True)]  # fmt: skip
        problems += [
            f"{n} is {getattr(self, n)!r}, not text" for n in self._STRINGS if not isinstance(getattr(self, n), str)
        ]
        for name in ("concurrency", "request_rate"):
            value = getattr(self, name)
            if value is not None and not number(value, integer=name == "concurrency"):
                problems.append(f"{name} is {value!r}, not a number")
        if self.first_error is not None and not isinstance(self.first_error, str):
            problems.append(f"first_error is {self.first_error!r}, not text")
        if self.config is not None and not isinstance(self.config, dict):
            problems.append(f"config is {self.config!r}, not an object")
        stats = self.server_stats
        if stats is not None and not (
            isinstance(stats, dict) and counters(stats.get("before")) and counters(stats.get("after"))
            and all(number(r) for r in stats.get("read_s") or [])
            and isinstance(stats.get("read_s") or [], list)
        ):  # fmt: skip
            problems.append("server_stats is not {'before': {counter: number}, 'after': {counter: number}}")
        if problems:
            raise TypeError("; ".join(problems)[:500])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRow:
        if not isinstance(data, dict):
            raise TypeError(f"a row is {type(data).__name__}, not an object")
        known = {f.name for f in dataclasses.fields(cls)}
        row = cls(**{k: v for k, v in data.items() if k in known})
        row._check_types()
        if row.server_stats:  # JSON turned batch sizes into strings; make them ints again
            for snapshot in (row.server_stats.get("before"), row.server_stats.get("after")):
                if isinstance(snapshot, dict) and "batch_stats" in snapshot:
                    snapshot["batch_stats"] = {int(k): v for k, v in snapshot["batch_stats"].items()}
        return row


class BenchTable:
    """A list of ``BenchRow`` with the operations a benchmark needs: filter, best under an SLO, save, load, show."""

    def __init__(self, rows: Iterable[BenchRow] = ()):
        self.rows: list[BenchRow] = list(rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BenchTable) and self.rows == other.rows

    # ------------------------------------------------------------------ list-like
    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[BenchRow]:
        return iter(self.rows)

    @overload
    def __getitem__(self, index: int) -> BenchRow: ...
    @overload
    def __getitem__(self, index: slice) -> BenchTable: ...
    def __getitem__(self, index: int | slice) -> BenchRow | BenchTable:
        if isinstance(index, slice):
            return BenchTable(self.rows[index])
        return self.rows[index]

    def append(self, row: BenchRow) -> None:
        self.rows.append(row)

    def extend(self, rows: Iterable[BenchRow]) -> BenchTable:
        self.rows.extend(rows)
        return self

    def __add__(self, other: Iterable[BenchRow]) -> BenchTable:
        return BenchTable([*self.rows, *other])

    # ------------------------------------------------------------------ queries
    def filter(self, **criteria: Any) -> BenchTable:
        """Rows whose fields equal every criterion, e.g. ``table.filter(label="batch8", concurrency=16)``."""
        fields = {f.name for f in dataclasses.fields(BenchRow)}
        unknown = sorted(set(criteria) - fields)
        if unknown:
            raise TritonLabError(
                f"BenchTable.filter: no field named {', '.join(unknown)}", fix=f"filter on one of: {', '.join(fields)}"
            )
        return BenchTable(r for r in self.rows if all(getattr(r, k) == v for k, v in criteria.items()))

    def best_under_slo(self, p99_ms: float, concurrency: int | None = None) -> BenchRow | None:
        """The row with the highest throughput whose p99 latency meets the SLO (None if no row does)."""
        rows = [r for r in self.rows if r.p99_ms <= p99_ms and (concurrency is None or r.concurrency == concurrency)]
        return max(rows, key=lambda r: r.throughput, default=None)

    @property
    def labels(self) -> list[str]:
        """Distinct labels in first-seen order."""
        return list(dict.fromkeys(r.label for r in self.rows))

    # ------------------------------------------------------------------ JSON files
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchTable:
        rows = []
        for number, row in enumerate(data["rows"], 1):
            try:
                rows.append(BenchRow.from_dict(row))
            except TypeError as e:
                raise TypeError(f"row {number}: {e}") from None
        return cls(rows)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (atomically: a crash never leaves half a results file)."""
        from tritonlab.diskspace import atomic_write_text, clear_when_full

        path = Path(path)
        with clear_when_full(path.parent, f"the results file {path.name}"):
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.to_json(), f"the results file {path.name}", tmp=path.with_name(path.name + ".tmp"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> BenchTable:
        """Read a results file written by ``save`` (or ``run_bench(save_to=...)``)."""
        path = Path(path)
        if not path.is_file():
            raise TritonLabError(
                f"no benchmark results file at {path}",
                fix="check the path, or create it with run_bench(..., save_to=path) / `tritonlab bench --save`",
            )
        try:
            size = path.stat().st_size
            if size > MAX_RESULTS_BYTES:
                limit = MAX_RESULTS_BYTES // 2**20
                raise ValueError(f"it is {size / 2**20:.0f} MiB, more than any results file ({limit} MiB at most)")
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
                raise ValueError('expected a JSON object with a "rows" list')
            return cls.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            detail = f"line {e.lineno}, column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
            raise TritonLabError(
                f"{path} is not a tritonlab benchmark results file ({detail})",
                fix=f"delete or rename {path}, or save new results to another file",
            ) from None
        except OSError as e:
            raise TritonLabError(
                f"cannot read {path}: {e.strerror}",
                fix=f"give yourself read access (chmod u+r {path}) or save results elsewhere",
            ) from None

    # ------------------------------------------------------------------ display
    _COLUMNS = ("label", "tool", "proto", "load", "batch", "infer/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms",
                "avg ms", "requests", "errors", "srv batch")  # fmt: skip

    def _table_cells(self) -> tuple[list[str], list[list[str]]]:
        """Column names and cell texts; no label column when nothing is labelled."""
        cells = []
        for row in self.rows:
            avg_batch = row.server_avg_batch
            cells.append([row.label, row.tool, row.protocol, row.load, str(row.batch_size), f"{row.throughput:,.1f}",
                          f"{row.p50_ms:.2f}", f"{row.p90_ms:.2f}", f"{row.p95_ms:.2f}", f"{row.p99_ms:.2f}",
                          f"{row.avg_ms:.2f}", str(row.requests), str(row.errors),
                          "" if avg_batch is None else f"{avg_batch:.2f}"])  # fmt: skip
        if any(row.label for row in self.rows):
            return list(self._COLUMNS), cells
        return list(self._COLUMNS[1:]), [row[1:] for row in cells]

    def rich_table(self) -> Any:
        from rich.table import Table

        columns, cells = self._table_cells()
        models = sorted({r.model for r in self.rows})
        table = Table(title=", ".join(models) or None)
        for name in columns:
            table.add_column(name, justify="left" if name in ("label", "tool", "proto", "load") else "right")
        for row in cells:
            table.add_row(*row)
        return table

    def __str__(self) -> str:
        from rich.console import Console

        buffer = io.StringIO()
        Console(file=buffer, width=200, color_system=None, force_terminal=False).print(self.rich_table())
        return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")

    def __repr__(self) -> str:
        return f"<BenchTable {len(self.rows)} rows>\n{self}"

    def _repr_html_(self) -> str:
        columns, cells = self._table_cells()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
