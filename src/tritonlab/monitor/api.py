"""A small client for Prometheus's HTTP API (``/api/v1/...``): instant and range queries, alerts, rules, targets.

    api = PrometheusAPI("http://127.0.0.1:9090")
    api.query_value('sum(rate(nv_inference_count{model="encoder"}[5s]))')   # one number
    api.alerts()                                                            # pending and firing alerts

Plain ``urllib`` and JSON, as Prometheus documents the API: nothing to install, and a failed query raises
``PromQLError`` quoting Prometheus's own message (with the position in the expression).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tritonlab.errors import TritonLabError

PROMQL_FIX = "fix the expression at the position Prometheus gives (the Graph tab of the Prometheus UI helps)"


class PromQLError(TritonLabError):
    """Prometheus refused a query (a PromQL syntax or type error), or its answer is not what was asked for."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels and its value at ``timestamp`` (seconds since the epoch)."""

    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (timestamp, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.points]

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]


def describe(labels: dict[str, str]) -> str:
    """``name{a="b"}`` as Prometheus prints a series."""
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


class PrometheusAPI:
    """The HTTP API of a Prometheus server at ``url`` (``http://HOST:PORT``)."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # ------------------------------------------------------------------ transport
    def _request(self, path: str, params: dict[str, Any] | None = None, method: str = "GET") -> Any:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        body = query.encode() if method == "POST" else None
        url = f"{self.url}{path}" + (f"?{query}" if query and method == "GET" else "")
        request = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                raise TritonLabError(
                    f"Prometheus at {self.url} answered HTTP {e.code} to {path}: {raw[:200].decode(errors='replace')}",
                    fix="is this URL a Prometheus server?",
                ) from None
            raise PromQLError(f"Prometheus refused {path}: {answer.get('error', answer)}", fix=PROMQL_FIX) from None
        except OSError as e:
            reason = getattr(e, "reason", None) or e
            raise TritonLabError(
                f"Prometheus at {self.url} does not answer ({reason})",
                fix="start it (Prometheus(server).start(), or `tritonlab monitor up`) and use the URL it prints",
            ) from None
        if not path.startswith("/api/"):
            return raw.decode(errors="replace")
        answer = json.loads(raw)
        if answer.get("status") != "success":
            raise PromQLError(f"Prometheus refused {path}: {answer.get('error', answer)}", fix=PROMQL_FIX)
        return answer["data"]

    def ready(self) -> bool:
        """GET /-/ready answers 200 (Prometheus has loaded its config and serves queries). Never raises."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                return response.status == 200
        except OSError:
            return False

    def buildinfo(self) -> dict[str, Any]:
        """Prometheus's version and build (proves the URL is a Prometheus)."""
        return self._request("/api/v1/status/buildinfo")

    # ------------------------------------------------------------------ queries
    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Evaluate ``expr`` at time ``at`` (default: now): one Sample per series (a scalar gives one, no labels)."""
        data = self._query("/api/v1/query", expr, {"time": at})
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [Sample({}, float(result[1]), float(result[0]))]
        if kind == "vector":
            return [Sample(r["metric"], float(r["value"][1]), float(r["value"][0])) for r in result]
        raise PromQLError(
            f"{expr!r} is a {kind}, not a number per series",
            fix="a range vector (metric[5s]) must go through a function such as rate() or avg_over_time()",
        )

    def query_value(self, expr: str, at: float | None = None) -> float:
        """The single number ``expr`` evaluates to; PromQLError if it gives no series or several."""
        samples = self.query(expr, at)
        if len(samples) != 1:
            found = ", ".join(describe(s.labels) for s in samples[:4]) or "no series"
            raise PromQLError(
                f"{expr!r} returns {len(samples)} series ({found}), expected exactly one",
                fix='select one model ({model="..."}) or aggregate with sum(...); with no series, check names, '
                "labels and that traffic happened inside the range window",
            )
        return samples[0].value

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        """Evaluate ``expr`` at every ``step`` seconds from ``start`` to ``end`` (what a dashboard plots)."""
        data = self._query("/api/v1/query_range", expr, {"start": start, "end": end, "step": step})
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def _query(self, path: str, expr: str, params: dict[str, Any]) -> dict[str, Any]:
        if not expr or not expr.strip():
            raise PromQLError("the query is empty", fix="write a PromQL expression, e.g. up")
        try:
            return self._request(path, {"query": expr, **params}, method="POST")
        except PromQLError as e:
            reason = e.message.split(": ", 1)[-1]
            raise PromQLError(f"Prometheus cannot run {expr!r}: {reason}", fix=PROMQL_FIX) from None

    # ------------------------------------------------------------------ state
    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts: each with labels (alertname ...), state ("pending" or "firing"), activeAt, value."""
        return self._request("/api/v1/alerts")["alerts"]

    def alert_states(self) -> dict[str, str]:
        """{alertname: "firing" | "pending"} (firing wins when several series of one alert are active)."""
        states: dict[str, str] = {}
        for alert in self.alerts():
            name = alert["labels"].get("alertname", "")
            if states.get(name) != "firing":
                states[name] = alert["state"]
        return states

    def rules(self) -> list[dict[str, Any]]:
        """The rule groups Prometheus has loaded (each with file, rules, and per rule its health and lastError)."""
        return self._request("/api/v1/rules")["groups"]

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets: scrapeUrl, health ("up", "down", "unknown"), lastScrape, lastError."""
        return self._request("/api/v1/targets", {"state": "active"})["activeTargets"]

    def wait_first_scrape(self, timeout: float = 30.0, interval: float = 0.05) -> float:
        """Wait until every target has been scraped successfully once; return the seconds waited."""
        started = time.monotonic()
        last: list[dict[str, Any]] = []
        while time.monotonic() - started < timeout:
            last = self.targets()
            if last and all(t.get("health") == "up" for t in last):
                return time.monotonic() - started
            time.sleep(interval)
        errors = "; ".join(f"{t.get('scrapeUrl')}: {t.get('lastError') or t.get('health')}" for t in last)
        raise TritonLabError(
            f"Prometheus did not scrape its targets successfully within {timeout:.0f} s ({errors or 'no targets'})",
            fix="check that the Triton server runs and that its metrics URL is the one Prometheus scrapes",
        )

    def wait_for_alert(self, name: str, state: str = "firing", timeout: float = 30.0) -> float:
        """Wait until alert ``name`` reaches ``state``; return the seconds waited (TritonLabError on timeout)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.alert_states().get(name) == state:
                return time.monotonic() - started
            time.sleep(0.1)
        raise TritonLabError(
            f"alert {name} did not reach {state!r} within {timeout:.0f} s "
            f"(now: {self.alert_states().get(name, 'inactive')})",
            fix="check its expression in the Prometheus UI (Alerts tab) and its `for:` duration",
        )
