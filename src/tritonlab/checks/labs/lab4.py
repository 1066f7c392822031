"""Lab 4 (04_monitoring) checkpoints: PromQL that gives the server's own numbers under a load the check drives,
alert rules that promtool accepts and that fire when their condition is induced (and only then), a correct
diagnosis of the two mis-tuned deployments, and fixes that measurably beat them."""

from __future__ import annotations

import math
import time
from typing import Any

from tritonlab.checks.core import Context, Fail, Unattempted, checkpoint

QUERY_NAMES = ("throughput", "error_rate", "avg_batch_size", "p95_latency_ms")
CHECK_CONCURRENCY, CHECK_BATCH = 4, 2  # batches of 2: counting requests instead of inferences shows
CHECK_SECONDS, CHECK_WARMUP = 5.0, 1.0
RATE_TOLERANCE = 0.10  # relative, for rates and ratios over a steady load
P95_TOLERANCE = 0.15
SHARE_TOLERANCE = 0.05  # absolute, for the queue's share of time
MIN_SPEEDUP = 1.5
FIRST_SCRAPE_WAIT_S = 15.0


def _close(got: float, want: float, relative: float, absolute: float = 1e-3) -> bool:
    return math.isfinite(got) and abs(got - want) <= relative * abs(want) + absolute


def _metrics_url(ctx: Context) -> str:
    from tritonlab.errors import TritonLabError
    from tritonlab.monitor import metrics_url_of

    server = ctx.require_server()
    try:
        return server.metrics_url or metrics_url_of(server.http_url)
    except TritonLabError as e:
        raise Fail(e.message) from None


def _prometheus(ctx: Context) -> Any:
    """The learner's Prometheus: one tritonlab started that scrapes this server, with a healthy target."""
    from tritonlab.errors import TritonLabError
    from tritonlab.monitor import PrometheusAPI, registry

    metrics_url = _metrics_url(ctx)
    found = registry.for_target(metrics_url)
    if not found:
        raise Fail(f"no Prometheus started by tritonlab scrapes {metrics_url}: run prom = Prometheus(server).start()")
    api = PrometheusAPI(found[0].url)
    deadline = time.monotonic() + FIRST_SCRAPE_WAIT_S  # a Prometheus started just now scrapes after ~6 s
    while True:
        try:
            target = {t["scrapeUrl"]: t for t in api.targets()}.get(metrics_url)
        except TritonLabError as e:
            raise Fail(e.message) from None
        if (target is not None and target.get("health") == "up") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if target is None or target.get("health") != "up":
        state = "not a target" if target is None else f"{target.get('health')}: {target.get('lastError')}"
        raise Fail(f"Prometheus at {api.url} does not scrape {metrics_url} successfully ({state})")
    return api


def _stats(ctx: Context, model: str) -> dict[str, Any]:
    status, stats = ctx.server_get(f"/v2/models/{model}/stats")
    if status != 200 or not isinstance(stats, dict) or not stats.get("model_stats"):
        raise Fail(f"no statistics for {model} (HTTP {status}): is it loaded?")
    return stats["model_stats"][0]


def _counts(stats: dict[str, Any]) -> dict[str, int]:
    inference = stats.get("inference_stats", {})
    return {
        "success": int(inference.get("success", {}).get("count", 0)),
        "fail": int(inference.get("fail", {}).get("count", 0)),
        "queue_ns": int(inference.get("queue", {}).get("ns", 0)),
        "compute_ns": int(inference.get("compute_infer", {}).get("ns", 0)),
        "executions": int(stats.get("execution_count", 0)),
    }


def _loaded(ctx: Context, model: str) -> Any:
    from tritonlab.labs.lab4 import Deployment

    status, config = ctx.server_get(f"/v2/models/{model}/config")
    if status != 200 or not isinstance(config, dict):
        raise Fail(f"the server has no {model} loaded (HTTP {status})")
    return Deployment.from_config(model, config)


def _summary_quantile_ms(quantile: float) -> str:
    from tritonlab.labs.lab4 import ENCODER

    return f'max(nv_inference_request_summary_us{{model="{ENCODER}",quantile="{quantile:g}"}}) / 1000'


def _drive_encoder(ctx: Context) -> tuple[dict[str, float], list[float], float]:
    """Load encoder steadily; (truth from the server's own counters, the latency quantiles it exports, query time)."""
    from tritonlab.errors import TritonLabError
    from tritonlab.labs.lab4 import ENCODER, LAB_ENCODER, request_tokens, run_load
    from tritonlab.monitor import ModelMetrics

    if not _loaded(ctx, ENCODER).same_settings(LAB_ENCODER):
        raise Fail(f"{ENCODER} does not run as the lab prepared it ({LAB_ENCODER}): reload it from lab4_repo")
    before = _counts(_stats(ctx, ENCODER))
    try:
        (row,) = run_load(ctx.require_server().http_url, ENCODER, protocol="http", concurrency=CHECK_CONCURRENCY,
                          batch_size=CHECK_BATCH, duration_s=CHECK_SECONDS, warmup_s=CHECK_WARMUP,
                          inputs={"TOKENS": request_tokens()})  # fmt: skip
    except TritonLabError as e:
        raise Fail(f"the check's load on {ENCODER} failed: {e.message}") from None
    ended = time.time()
    after = _counts(_stats(ctx, ENCODER))
    requests = (after["success"] - before["success"]) + (after["fail"] - before["fail"])
    edges = row.server_stats or {}
    inferences = int(edges.get("after", {}).get("inference_count", 0)) - int(
        edges.get("before", {}).get("inference_count", 0)
    )
    truth = {
        "throughput": inferences / row.window_s,
        "error_rate": (after["fail"] - before["fail"]) / requests if requests else 0.0,
        "avg_batch_size": row.server_avg_batch or 0.0,
    }
    time.sleep(max(0.0, ended + 1.3 - time.time()))  # a scrape after the load ended is in Prometheus now
    levels = sorted(ModelMetrics.read(_metrics_url(ctx), ENCODER).quantiles_us)
    return truth, levels, ended - 0.5  # the [5s] windows then lie inside the steady load


@checkpoint(
    "lab4.promql",
    title="Your PromQL gives the server's own throughput, error rate, batch size and p95 latency",
    points=3,
    hint='Select the encoder (model="encoder"), sum over series, use [5s] windows: throughput = rate of '
    "nv_inference_count; error rate = failures / (successes + failures); batch = inferences / executions; "
    "p95 = the 0.95 quantile of nv_inference_request_summary_us, in ms.",
)
def promql(ctx: Context) -> str:
    from tritonlab.monitor import PromQLError

    queries = ctx.value("queries")
    if not isinstance(queries, dict) or set(queries) != set(QUERY_NAMES):
        raise Fail(f"submit a dict with exactly the keys {list(QUERY_NAMES)}, got {queries!r}")
    api = _prometheus(ctx)
    try:
        for expr in queries.values():
            api.query(str(expr))  # syntax and type errors show before the check spends time on load
        truth, levels, at = _drive_encoder(ctx)
        got = {name: api.query_value(str(queries[name]), at=at) for name in QUERY_NAMES}
    except PromQLError as e:
        raise Fail(e.message) from None
    for name in ("throughput", "error_rate", "avg_batch_size"):
        if not _close(got[name], truth[name], RATE_TOLERANCE):
            raise Fail(f"{name}: your query gives {got[name]:.4g}; Triton's /stats give {truth[name]:.4g} for the "
                       "same load (a [5s] window? inferences, not requests? failures over all requests?)")  # fmt: skip
    if 0.95 not in levels:
        raise Fail("Triton exports no latency summary: start the server with extra_args=SUMMARY_LATENCIES")
    # Triton's summary slides with time, so the reference is its own series as Prometheus scraped it at the same
    # instant as the learner's query (read directly a second later, neighbouring quantiles had already moved)
    try:
        quantiles = {q: api.query_value(_summary_quantile_ms(q), at=at) for q in levels}
    except PromQLError as e:
        raise Fail(f"Prometheus has not stored Triton's latency summary: {e.message}") from None
    want = quantiles[0.95]
    closest = min(quantiles, key=lambda q: abs(quantiles[q] - got["p95_latency_ms"]))
    if closest != 0.95 or not _close(got["p95_latency_ms"], want, P95_TOLERANCE):
        shown = ", ".join(f"p{q * 100:g} {v:.2f}" for q, v in sorted(quantiles.items()))
        raise Fail(f"p95_latency_ms: your query gives {got['p95_latency_ms']:.4g}; Triton's summary says {shown} ms")
    return (f"under the check's load: {got['throughput']:.0f} inferences/s, error rate {got['error_rate']:.3f}, "
            f"batch {got['avg_batch_size']:.2f}, p95 {got['p95_latency_ms']:.2f} ms: Triton's own figures")  # fmt: skip


def _rules_file(ctx: Context) -> Any:
    from tritonlab.errors import TritonLabError
    from tritonlab.labs.lab4 import RULES
    from tritonlab.monitor import check_rules

    path = ctx.path(RULES)
    if not path.is_file():
        raise Unattempted(f"{path} does not exist yet: write your rules there")
    try:
        return check_rules(path)
    except TritonLabError as e:  # RulesError (promtool's lines), or promtool missing (the apt fix)
        raise Fail(str(e)) from None


@checkpoint(
    "lab4.rules_valid",
    title="Your rules file passes promtool check rules",
    points=1,
    needs_server=False,
    hint="promtool check rules lab4_alerts.yml shows file:line:column for each problem.",
)
def rules_valid(ctx: Context) -> str:
    from tritonlab.labs.lab4 import ALERTS

    report = _rules_file(ctx)
    if report.rules < len(ALERTS):
        raise Fail(f"promtool found {report.rules} rule(s); the lab asks for {len(ALERTS)} alerts: {', '.join(ALERTS)}")
    return f"promtool: {report.rules} valid rules in {report.path.name}"


@checkpoint(
    "lab4.alerts_fire",
    title="Each alert fires when its condition is induced, and not before",
    points=2,
    needs_server=False,
    hint="TritonDown: up == 0. TritonHighErrorRate: failures / all requests > 0.1 over [5s]. "
    "TritonHighQueueLatency: queue µs / successful requests over [5s] above 50 ms. for: 2s each.",
)
def alerts_fire(ctx: Context) -> str:
    from tritonlab.labs.lab4 import ALERTS, MAX_FOR_S, alert_drill

    report = _rules_file(ctx)
    drill = alert_drill(report.path)
    missing = [name for name in ALERTS if name not in drill.loaded]
    if missing:
        raise Fail(f"no alerting rule named {', '.join(missing)} (Prometheus loaded: {drill.loaded or 'none'})")
    slow = {n: s for n, s in drill.for_s.items() if n in ALERTS and s > MAX_FOR_S}
    if slow:
        raise Fail(f"for: durations {slow} s are longer than this lab's {MAX_FOR_S:g} s (production uses minutes)")
    if drill.load_errors:
        raise Fail(f"the drill's load failed, so it proves nothing: {drill.load_errors[0]}")
    if drill.healthy:
        raise Fail(f"while everything was healthy these alerts were active: {drill.healthy}")
    if drill.wrong_phase:
        raise Fail(f"active while their condition was absent: {drill.wrong_phase}")
    if drill.not_fired:
        raise Fail(f"never reached 'firing' while their condition held: {drill.not_fired}")
    return "; ".join(f"{name} fired {drill.fired[name]:.1f} s after its condition began" for name in ALERTS)


@checkpoint(
    "lab4.diagnosis",
    title="You told the queue-bound deployment from the compute-bound one, from metrics",
    points=2,
    hint="For each mystery model: queue share = queue time / (queue time + compute time) from its counters; "
    "most of the time in the queue: queue-bound; most in the model: compute-bound.",
)
def diagnosis(ctx: Context) -> str:
    from tritonlab.labs.lab4 import MYSTERY

    verdicts, shares = ctx.value("diagnosis"), ctx.value("queue_share")
    if (
        not isinstance(verdicts, dict)
        or not isinstance(shares, dict)
        or not set(MYSTERY) <= set(verdicts) & set(shares)
    ):
        raise Fail(f"submit diagnosis and queue_share as dicts with keys {list(MYSTERY)}")
    truth = {}
    for model in MYSTERY:
        counts = _counts(_stats(ctx, model))
        busy = counts["queue_ns"] + counts["compute_ns"]
        if counts["executions"] == 0 or busy == 0:
            raise Unattempted(f"{model} has served nothing yet: measure it first")
        live = counts["queue_ns"] / busy
        if not _close(float(shares[model]), live, 0.0, SHARE_TOLERANCE):
            raise Fail(
                f"{model}: you computed a queue share of {float(shares[model]):.3f}; its counters give {live:.3f}"
            )
        truth[model] = ("queue-bound" if live > 0.5 else "compute-bound", live)
    if len({kind for kind, _ in truth.values()}) != 2:
        raise Fail(f"both deployments now look {truth[MYSTERY[0]][0]}: diagnose them as prepared, before fixing")
    for model, (kind, live) in truth.items():
        if str(verdicts[model]).strip().lower() != kind:
            raise Fail(f"{model} is not {verdicts[model]!r}: its requests spend {live:.0%} of their time queued")
    return "; ".join(f"{m}: {k} ({s:.0%} of the time queued)" for m, (k, s) in truth.items())


def _row_problem(row: Any) -> str | None:
    """Why a results row cannot stand as a measurement: no server statistics, or inconsistent with them."""
    if not row.server_stats:
        return "no server statistics recorded (use measure())"
    return row.inconsistency()


@checkpoint(
    "lab4.fixes",
    title="Each fix beats its mis-tuned deployment by a measurable margin, and is the one loaded",
    points=2,
    hint=f"measure(server, model, 'before') as prepared, load your fix, measure(server, model, 'after'); "
    f"throughput must rise at least {MIN_SPEEDUP}x and p95 fall. speedup = after / before throughput.",
)
def fixes(ctx: Context) -> str:
    from tritonlab.bench import BenchTable
    from tritonlab.errors import TritonLabError
    from tritonlab.labs.lab4 import MYSTERY, RESULTS, Deployment, mistuning

    path = ctx.path(RESULTS)
    if not path.exists():
        raise Unattempted(f"{path} does not exist yet: run the measurement cells")
    try:
        rows = {(r.model, r.label): r for r in BenchTable.load(path)}  # the newest row per model and label wins
    except TritonLabError as e:
        raise Fail(str(e)) from None
    submitted = ctx.value("speedup")
    found = []
    for model in MYSTERY:
        before, after = rows.get((model, "before")), rows.get((model, "after"))
        if before is None or after is None:
            raise Unattempted(f"{RESULTS} needs a 'before' and an 'after' row for {model}")
        for row in (before, after):
            problem = _row_problem(row)
            if problem:
                raise Fail(f"{model} '{row.label}': {problem}")
        if (before.concurrency, before.batch_size, before.protocol) != (after.concurrency, after.batch_size,
                                                                         after.protocol):  # fmt: skip
            raise Fail(f"{model}: 'before' and 'after' were measured under different loads")
        try:
            was, now = Deployment(**(before.config or {"name": model})), Deployment(**(after.config or {"name": model}))
            mistuning(was), mistuning(now), now.settings()
        except (TypeError, ValueError) as e:
            raise Fail(f"{model}: a row's config is not a deployment the lab writes ({e}): measure it again with "
                       "measure()") from None  # fmt: skip
        if mistuning(was) is None:
            raise Fail(f"{model}: 'before' measured {was}, not the deployment as the lab prepared it")
        if mistuning(now) is not None or now.fail_every:
            raise Fail(f"{model}: 'after' still runs a mis-tuned deployment ({now})")
        live = _loaded(ctx, model)
        if not live.same_settings(now):
            raise Fail(f"the server runs {model} as {live}, not as your measured fix {now}: load it")
        last = after.server_stats["after"]
        if _counts(_stats(ctx, model))["success"] < int(last.get("success_count", 0)):
            raise Fail(f"{model}'s 'after' row was not measured on this server since the fix was loaded")
        if before.throughput <= 0:
            raise Fail(f"{model}: the 'before' row has no throughput (0 inferences/s): measure it again")
        ratio = after.throughput / before.throughput
        if ratio < MIN_SPEEDUP or after.p95_ms >= before.p95_ms:
            raise Fail(f"{model}: {before.throughput:.0f} -> {after.throughput:.0f}/s ({ratio:.2f}x), "
                       f"p95 {before.p95_ms:.0f} -> {after.p95_ms:.0f}ms (need {MIN_SPEEDUP}x, lower p95)")  # fmt: skip
        mine = float((submitted or {}).get(model, float("nan"))) if isinstance(submitted, dict) else float("nan")
        if not _close(mine, ratio, 0.02):
            raise Fail(f"{model}: you computed a speedup of {mine:.3g}; the rows give {ratio:.3g}")
        found.append(f"{model} ({mistuning(was)}): {ratio:.1f}x throughput, p95 {before.p95_ms:.0f} -> "
                     f"{after.p95_ms:.0f} ms")  # fmt: skip
    return "; ".join(found)
