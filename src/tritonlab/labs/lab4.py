"""Lab 4 (monitoring and performance): an encoder served by Triton, watched by a real Prometheus.

    prepare_repository("lab4_repo")          # encoder (flaky: every 4th execution fails), mystery_a, mystery_b
    server = start_server("lab4_repo", model_control_mode="explicit", models=MODELS, extra_args=SUMMARY_LATENCIES)
    prom = Prometheus(server).start()

``mystery_a`` and ``mystery_b`` are the same encoder, deliberately mis-tuned: one is queue-bound (no dynamic
batching, requests wait for the single instance), the other compute-bound (padded to 512 tokens, so every
execution computes 16x the tokens it needs). Which is which is drawn at random per workspace: the metrics
must tell. ``alert_drill`` induces each alert's condition on a Triton of its own and records what fired.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonlab.diskspace import reports_disk_full
from tritonlab.errors import TritonLabError

if TYPE_CHECKING:  # pragma: no cover
    from tritonlab.bench import BenchRow
    from tritonlab.server import Server

ASSETS = Path(__file__).with_name("lab4_models")
ENCODER, MYSTERY = "encoder", ("mystery_a", "mystery_b")
MODELS = (ENCODER, *MYSTERY)
SEQ_LEN = 32  # the lab's requests: 32 token ids each
MAX_BATCH_SIZE = 64
LOAD_CONCURRENCY = 16  # the diagnosis and its fixes are measured at this load
RESULTS = "lab4_results.json"
RULES = "lab4_alerts.yml"
DASHBOARD_PNG = "lab4_dashboard.png"
# The alerts the rules file must define, and the conditions the lab asks for.
ALERTS = ("TritonDown", "TritonHighErrorRate", "TritonHighQueueLatency")
ERROR_RATE_THRESHOLD = 0.10  # more than 10% of requests failing
QUEUE_THRESHOLD_MS = 50.0  # requests waiting more than 50 ms on average in the queue
MAX_FOR_S = 5.0  # the lab's alerts wait at most this long in "pending" (production rules use minutes)


@dataclass(frozen=True)
class Deployment:
    """How one encoder model is served: dynamic batching or not, instances, static padding, induced failures."""

    name: str
    batching: bool = True
    instances: int = 1
    pad_to: int = 0  # 0: no padding (the requests' own length)
    max_queue_delay_us: int = 0
    fail_every: int = 0  # fail every N-th execution (a flaky dependency); 0: never

    def settings(self) -> tuple[Any, ...]:
        delay = self.max_queue_delay_us if self.batching else 0  # the delay exists only with dynamic batching
        return self.batching, self.instances, self.pad_to, delay, self.fail_every

    def same_settings(self, other: Deployment) -> bool:
        return self.settings() == other.settings()

    def renamed(self, name: str) -> Deployment:
        return Deployment(name, *self.settings())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_config(self) -> Any:
        """Triton's ModelConfig protobuf for this deployment (python backend, model.py = the encoder)."""
        from tritonclient.grpc import model_config_pb2 as mc

        config = mc.ModelConfig(name=self.name, backend="python", max_batch_size=MAX_BATCH_SIZE)
        config.input.add(name="TOKENS", data_type=mc.TYPE_INT64, dims=[-1])
        config.output.add(name="EMBEDDING", data_type=mc.TYPE_FP32, dims=[64])
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=self.instances)
        if self.batching:
            config.dynamic_batching.max_queue_delay_microseconds = self.max_queue_delay_us
        config.parameters["pad_to"].string_value = str(self.pad_to)
        config.parameters["fail_every"].string_value = str(self.fail_every)
        return config

    def config_text(self) -> str:
        from google.protobuf import text_format

        return text_format.MessageToString(self.model_config())

    def config_json(self) -> dict[str, Any]:
        from google.protobuf import json_format

        return json_format.MessageToDict(self.model_config(), preserving_proto_field_name=True)

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any]) -> Deployment:
        """The deployment a loaded config (Triton's JSON, as /config returns it) amounts to."""
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        batching = config.get("dynamic_batching")
        return cls(
            name,
            batching=batching is not None,
            instances=sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1,
            pad_to=int(parameters.get("pad_to") or 0),
            max_queue_delay_us=int((batching or {}).get("max_queue_delay_microseconds", 0)),
            fail_every=int(parameters.get("fail_every") or 0),
        )


LAB_ENCODER = Deployment(ENCODER, fail_every=4)  # "a flaky feature store": every 4th execution fails
QUEUE_BOUND = Deployment("queue-bound", batching=False)
COMPUTE_BOUND = Deployment("compute-bound", instances=2, pad_to=512)
MISTUNED = {"queue-bound": QUEUE_BOUND, "compute-bound": COMPUTE_BOUND}


def mistuning(deployment: Deployment) -> str | None:
    """ "queue-bound" / "compute-bound" if ``deployment`` is one of the lab's mis-tunings, else None."""
    return next((kind for kind, bad in MISTUNED.items() if bad.same_settings(deployment)), None)


def write_model(dest: Path, deployment: Deployment) -> None:
    (dest / deployment.name / "1").mkdir(parents=True, exist_ok=True)
    (dest / deployment.name / "config.pbtxt").write_text(deployment.config_text())
    shutil.copyfile(ASSETS / "encoder.py", dest / deployment.name / "1" / "model.py")


@reports_disk_full("the lab 4 model repository")
def prepare_repository(dest: str | Path, seed: int | None = None) -> Path:
    """encoder, and mystery_a / mystery_b mis-tuned one each way (which is which: random, or fixed by ``seed``)."""
    dest = Path(dest)
    write_model(dest, LAB_ENCODER)
    kinds = list(MISTUNED)
    random.Random(seed).shuffle(kinds)
    for name, kind in zip(MYSTERY, kinds, strict=True):
        write_model(dest, MISTUNED[kind].renamed(name))
    return dest


def request_tokens(length: int = SEQ_LEN, seed: int = 0) -> np.ndarray:
    """One request's token ids (valid: in [0, 1000))."""
    return np.random.default_rng(seed).integers(0, 1000, size=length, dtype=np.int64)


def load_deployment(server: Server, deployment: Deployment) -> None:
    """(Re)load a model with ``deployment``'s settings through the repository API (explicit mode)."""
    server.load_model(deployment.name, config=deployment.config_json())


def loaded_deployment(server: Server | str, model: str) -> Deployment:
    """The deployment the server runs ``model`` with now (its loaded config)."""
    from tritonlab.bench.stats import get_json

    url = server if isinstance(server, str) else server.http_url
    config = get_json(url, f"/v2/models/{model}/config", what=f"the config of {model}", fix="load the model first")
    return Deployment.from_config(model, config)


def measure(
    server: Server | str,
    model: str,
    label: str,
    *,
    concurrency: int = LOAD_CONCURRENCY,
    duration_s: float = 2.0,
    warmup_s: float = 0.5,
    save_to: str | Path | None = RESULTS,
    progress: bool = False,
) -> BenchRow:
    """One load run of ``model`` (gRPC, ``concurrency`` clients, one request of SEQ_LEN tokens each), saved with
    the deployment it measured."""
    from tritonlab.bench import run_bench

    (row,) = run_bench(
        server, model, tool="builtin", concurrency=concurrency, duration_s=duration_s, warmup_s=warmup_s,
        inputs={"TOKENS": request_tokens()}, label=label, config=loaded_deployment(server, model).as_dict(),
        save_to=save_to, progress=progress,
    )  # fmt: skip
    return row


def run_load(server: Server | str, model: str, *, attempts: int = 5, **bench: Any) -> Any:
    """``run_bench`` on a flaky model: its one probe request may land on a failing execution; try again then."""
    from tritonlab.bench import run_bench

    for attempt in range(attempts):
        try:
            return run_bench(server, model, **{"tool": "builtin", "progress": False, **bench})
        except TritonLabError as e:
            if "simulated failure" not in e.message or attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")


def token_stream_metrics(sent_s: float, token_times_s: list[float]) -> dict[str, float]:
    """The LLM serving metrics of one streamed response (measured in lab 5): time to first token, mean
    inter-token latency, and output tokens per second, from when the request was sent and each token arrived."""
    if not token_times_s:
        raise TritonLabError("no token arrived", fix="pass the arrival time of every streamed token")
    times = sorted(token_times_s)
    gaps = np.diff(times)
    return {
        "ttft_ms": (times[0] - sent_s) * 1000,
        "itl_ms": float(gaps.mean() * 1000) if gaps.size else 0.0,
        "tokens_per_s": len(times) / (times[-1] - sent_s) if times[-1] > sent_s else float("inf"),
        "output_tokens": float(len(times)),
    }


# ---------------------------------------------------------------- the alert drill


@dataclass
class DrillReport:
    """What each alert did while the drill induced its condition (and while everything was healthy)."""

    loaded: list[str] = field(default_factory=list)  # alert names Prometheus loaded from the file
    for_s: dict[str, float] = field(default_factory=dict)  # each alert's `for:` duration
    healthy: dict[str, str] = field(default_factory=dict)  # alerts active while all was well (should be none)
    fired: dict[str, float] = field(default_factory=dict)  # alert -> seconds after its condition began
    not_fired: dict[str, str] = field(default_factory=dict)  # alert -> the state it reached instead
    wrong_phase: dict[str, str] = field(default_factory=dict)  # alert -> state it reached where it should not
    timeline: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    load_errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (set(ALERTS) <= set(self.loaded) and not self.healthy and not self.wrong_phase
                and set(self.fired) >= set(ALERTS) and not self.load_errors)  # fmt: skip


def drill_repository(dest: Path) -> Path:
    """A failing encoder (every 2nd execution) and a slow one: alone it is healthy, under load requests queue."""
    write_model(dest, Deployment("failing", fail_every=2))
    write_model(dest, Deployment("slow", batching=False, pad_to=1024))
    return dest


def _load_in_thread(
    server: Server, model: str, concurrency: int, seconds: float, errors: list[str], stopping: threading.Event
) -> threading.Thread:
    def run() -> None:
        try:
            run_load(server, model, protocol="http", concurrency=concurrency, duration_s=seconds, warmup_s=0.0,
                     inputs={"TOKENS": request_tokens()})  # fmt: skip
        except TritonLabError as e:
            if not stopping.is_set():  # a load cut short by the drill stopping the server is expected
                errors.append(f"{model}: {e.message}")

    thread = threading.Thread(target=run, name=f"drill-{model}", daemon=True)
    thread.start()
    return thread


def _watch(
    prom: Any, report: DrillReport, phase: str, seconds: float, *, until: set[str], forbidden: set[str], started: float
) -> None:
    """Poll alert states for ``seconds`` (or until every alert in ``until`` fires), recording the timeline.

    An alert in ``forbidden`` that is even pending is wrong: its condition is not there in this phase."""
    begin = time.monotonic()
    while time.monotonic() - begin < seconds:
        states = prom.alert_states()
        report.timeline.append((round(time.monotonic() - started, 2), phase, states))
        for name, state in states.items():
            if name in forbidden:
                (report.healthy if phase == "healthy" else report.wrong_phase).setdefault(name, f"{state} ({phase})")
            if state == "firing" and name in until and name not in report.fired:
                report.fired[name] = round(time.monotonic() - begin, 2)
        if until and until <= set(report.fired):
            return
        time.sleep(0.2)


def alert_drill(rules: str | Path, *, fault_s: float = 8.0, down_s: float = 10.0) -> DrillReport:
    """Run the rules on a Prometheus and a Triton of the drill's own, and induce each condition in turn:
    all healthy (nothing may fire), failing requests and a queue (TritonHighErrorRate, TritonHighQueueLatency
    must fire, TritonDown must not), then the server stopped (TritonDown must fire)."""
    from tritonlab.monitor import SUMMARY_LATENCIES, Prometheus
    from tritonlab.server import create_server
    from tritonlab.server.ports import free_ports
    from tritonlab.server.process import sweep_orphaned_shm

    report = DrillReport()
    stopping = threading.Event()
    with tempfile.TemporaryDirectory(prefix="tritonlab-drill-") as tmp:
        (metrics_port,) = free_ports(1)
        server = create_server(drill_repository(Path(tmp)), metrics_port=metrics_port, extra_args=SUMMARY_LATENCIES)
        # Prometheus first: its ~5 s until the first scrape (target discovery) overlaps Triton's start.
        with Prometheus(f"http://127.0.0.1:{metrics_port}/metrics", rule_files=[rules]) as prom:
            try:
                server.start()
                rules_api = [r for g in prom.rules() for r in g["rules"] if r.get("type") == "alerting"]
                report.loaded = [r["name"] for r in rules_api]
                report.for_s = {r["name"]: float(r.get("duration", 0)) for r in rules_api}
                if set(ALERTS) - set(report.loaded) or any(report.for_s.get(n, 0) > MAX_FOR_S for n in ALERTS):
                    return report  # nothing to drill: the checkpoint says what is missing
                prom.wait_first_scrape()
                started = time.monotonic()
                healthy = _load_in_thread(server, "slow", 1, 2.5, report.load_errors, stopping)
                _watch(prom, report, "healthy", 3.0, until=set(), forbidden=set(ALERTS), started=started)
                healthy.join()
                for model, concurrency in (("failing", 2), ("slow", 16)):
                    _load_in_thread(server, model, concurrency, fault_s, report.load_errors, stopping)
                faults = {"TritonHighErrorRate", "TritonHighQueueLatency"}
                _watch(prom, report, "faults", fault_s, until=faults, forbidden={"TritonDown"}, started=started)
                stopping.set()
                server.kill()  # a crash, not a graceful stop: down at once (a model that raised unloads slowly)
                _watch(prom, report, "server down", down_s, until={"TritonDown"}, forbidden=set(), started=started)
                states = prom.alert_states()
                report.not_fired = {name: states.get(name, "inactive") for name in ALERTS if name not in report.fired}
            finally:
                stopping.set()
                server.stop()
                sweep_orphaned_shm()  # the crashed stubs' shared memory
    return report
