"""Lab 3 (03_pytorch_backend) checkpoints: the exported model, Triton's answers, batching that really happened,
and benchmark results that agree with the server's own statistics."""

from __future__ import annotations

import filecmp
from typing import Any

import numpy as np

from tritonlab.checks.core import Context, Fail, Unattempted, checkpoint

REPO = "lab3_repo"
CONTAINER_REPO = "lab3_container_repo"
RESULTS = "lab3_results.json"
MODEL_PT = f"{REPO}/classifier/1/model.pt"
LOAD_CONCURRENCY = 16  # the load level at which the lab compares configurations
MARGIN = 1.5  # "beats no batching by a real margin": at least this throughput ratio


def _model_pt(ctx: Context, relative: str = MODEL_PT) -> Any:
    path = ctx.path(relative)
    if not path.is_file():
        raise Unattempted(f"{path} does not exist yet: export the model first")
    return path


def _load_results(ctx: Context) -> Any:
    from tritonlab.bench import BenchTable
    from tritonlab.errors import TritonLabError

    path = ctx.path(RESULTS)
    if not path.exists():
        raise Unattempted(f"{path} does not exist yet: run the benchmark cells (they save there)")
    try:
        return BenchTable.load(path)
    except TritonLabError as e:
        raise Fail(str(e)) from None


def _variant(config: dict[str, Any], name: str | None = None) -> Any:
    """The lab 3 Variant a row's config describes; Fail (naming it) for a config no lab cell writes."""
    from tritonlab.labs.lab3 import Variant

    try:
        variant = Variant(**({**config, "name": name} if name is not None else config))
        variant._settings(0)
        return variant
    except (TypeError, ValueError) as e:
        raise Fail(f"{RESULTS} holds a row whose config {config} is not a lab 3 variant ({e}): measure it again "
                   "with the lab's sweep cell") from None  # fmt: skip


def _ratio(numerator: float, denominator: float, what: str) -> float:
    if denominator <= 0:
        raise Fail(f"{what} has no throughput (0 inferences/s): measure it again")
    return numerator / denominator


def _latest(rows: list[Any]) -> dict[tuple[str, str, int | None], Any]:
    """The newest row per (model, label, concurrency): re-running a measurement replaces the old one."""
    latest: dict[tuple[str, str, int | None], Any] = {}
    for row in rows:
        latest[(row.model, row.label, row.concurrency)] = row
    return latest


@checkpoint(
    "lab3.torchscript_export",
    title="model.pt is a TorchScript export of the classifier",
    points=2,
    needs_server=False,
    hint="torch.jit.trace(LogitsOnly(clf.model), example_inputs(clf)) then .save('lab3_repo/classifier/1/model.pt').",
)
def torchscript_export(ctx: Context) -> str:
    from tritonlab.labs import lab3

    path = _model_pt(ctx)
    try:
        names = lab3.torchscript_argument_names(path)
    except Exception as e:  # torch says why it cannot load the file
        raise Fail(f"{path} is not a TorchScript file torch.jit.load can read: {str(e).splitlines()[0]}") from None
    if names != ["input_ids", "attention_mask"]:
        raise Fail(
            f"forward takes {names}; Triton's pytorch_libtorch backend maps the config's inputs to these names, "
            "so they must be ['input_ids', 'attention_mask'] (wrap the model in LogitsOnly)"
        )
    clf = lab3.build_classifier(ctx.value("hub_model"))
    worst = 0.0
    for texts in (lab3.SAMPLE_TEXTS, lab3.SAMPLE_TEXTS[2:3]):  # a padded batch of 8 and a batch of 1
        got = lab3.torchscript_logits(path, clf.encode(texts))
        want = clf.logits(texts)
        if got.shape != want.shape:
            raise Fail(f"model.pt returns shape {list(got.shape)} for {len(texts)} texts, expected {list(want.shape)}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > lab3.TOLERANCE["fp32"]:
        raise Fail(f"model.pt's logits differ from the model's by up to {worst:.2e} (allowed {lab3.TOLERANCE['fp32']})")
    return f"forward(input_ids, attention_mask); logits equal the model's (max |diff| {worst:.1e}) for batches 8 and 1"


@checkpoint(
    "lab3.container_repository",
    title="The container repository serves the same model.pt with pytorch_libtorch",
    points=1,
    needs_server=False,
    hint="prepare_repository('lab3_container_repo', clf, target='container') and copy your model.pt into "
    "lab3_container_repo/classifier/1/.",
)
def container_repository(ctx: Context) -> str:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from tritonlab.labs.lab3 import CLASSIFIER
    from tritonlab.model_config import validate

    repo = ctx.path(CONTAINER_REPO)
    if not repo.is_dir():
        raise Unattempted(f"{repo} does not exist yet")
    report = validate(repo)
    if not report.valid:
        raise Fail(f"{repo} is not valid:\n" + "\n".join(str(f) for f in report.errors[:3]))
    config = text_format.Parse((repo / CLASSIFIER / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    if config.platform != "pytorch_libtorch":
        raise Fail(f'{repo}/{CLASSIFIER}/config.pbtxt has platform {config.platform!r}, expected "pytorch_libtorch"')
    served = _model_pt(ctx, f"{CONTAINER_REPO}/{CLASSIFIER}/1/model.pt")
    if not filecmp.cmp(served, _model_pt(ctx), shallow=False):
        raise Fail("the container's model.pt is not the file you exported to lab3_repo: one artifact, two ways")
    return "valid; classifier runs the same model.pt on the pytorch_libtorch platform"


def _infer_texts(ctx: Context) -> dict[str, np.ndarray]:
    from tritonlab.labs import lab3

    status, _ = ctx.server_get(f"/v2/models/{lab3.ENSEMBLE}/ready")
    if status != 200:
        raise Fail(f"{lab3.ENSEMBLE} is not ready (HTTP {status}): load it through the API")
    texts = np.array([[t] for t in lab3.SAMPLE_TEXTS], dtype=object)
    return ctx.server_infer(lab3.ENSEMBLE, {"TEXT": texts})


def _loaded_config(ctx: Context, model: str) -> dict[str, Any]:
    status, config = ctx.server_get(f"/v2/models/{model}/config")
    if status != 200 or not isinstance(config, dict):
        raise Fail(f"the server has no {model} loaded (HTTP {status})")
    return config


@checkpoint(
    "lab3.outputs_correct",
    title="Triton's logits equal the in-process model's",
    points=2,
    hint="Load text_classifier (it loads tokenizer, classifier and postprocess) on a server started on lab3_repo.",
)
def outputs_correct(ctx: Context) -> str:
    from tokenizers import Tokenizer

    from tritonlab.labs import lab3

    outputs = _infer_texts(ctx)
    if "LOGITS" not in outputs:
        raise Fail(f"{lab3.ENSEMBLE} returned {sorted(outputs)}, no LOGITS")
    config = _loaded_config(ctx, lab3.CLASSIFIER)
    on_gpu = any(g.get("kind") == "KIND_GPU" for g in config.get("instance_group", []))
    precision = config.get("parameters", {}).get("precision", {}).get("string_value") or ("fp16" if on_gpu else "fp32")
    tokenizer = Tokenizer.from_file(str(ctx.path(f"{REPO}/{lab3.TOKENIZER}/1/tokenizer.json")))
    encoded = lab3.encode(tokenizer, lab3.SAMPLE_TEXTS)
    want = lab3.torchscript_logits(_model_pt(ctx), encoded)  # float32 on this CPU: the in-process answer
    got = np.asarray(outputs["LOGITS"], dtype=np.float32)
    if got.shape != want.shape:
        raise Fail(f"LOGITS has shape {list(got.shape)}, expected {list(want.shape)}")
    diff = float(np.abs(got - want).max())
    if diff > lab3.TOLERANCE[precision]:
        raise Fail(f"Triton's logits differ from the in-process model's by up to {diff:.2e} "
                   f"(allowed {lab3.TOLERANCE[precision]} for {precision})")  # fmt: skip
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(outputs.get("LABEL", [])).ravel()]
    names = _loaded_config(ctx, lab3.POSTPROCESS).get("parameters", {}).get("labels", {}).get("string_value", "")
    expected = [names.split(",")[i] for i in want.argmax(axis=1)] if names else labels
    if labels != expected:
        raise Fail(f"LABEL is {labels[:3]}..., the logits say {expected[:3]}...")
    return f"{len(lab3.SAMPLE_TEXTS)} texts: max |diff| {diff:.1e} ({precision}, tolerance {lab3.TOLERANCE[precision]})"


def _model_stats(ctx: Context, model: str) -> dict[str, Any]:
    status, stats = ctx.server_get(f"/v2/models/{model}/stats")
    if status != 200 or not isinstance(stats, dict) or not stats.get("model_stats"):
        raise Fail(f"no statistics for {model} (HTTP {status}): is it loaded?")
    return stats["model_stats"][0]


@checkpoint(
    "lab3.batching_observed",
    title="Dynamic batching happened under concurrent load",
    points=2,
    hint="Load classifier with a dynamic_batching block, send concurrent requests (the confirm run), then "
    "avg_batch = inference_count / execution_count from server.model_stats('classifier').",
)
def batching_observed(ctx: Context) -> str:
    from tritonlab.labs.lab3 import CLASSIFIER

    if "dynamic_batching" not in _loaded_config(ctx, CLASSIFIER):
        raise Fail("the classifier Triton has loaded has no dynamic_batching block: every request runs alone")
    stats = _model_stats(ctx, CLASSIFIER)
    inferences, executions = int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))
    if executions == 0:
        raise Fail("classifier has not run since it was loaded: send concurrent requests first")
    live = inferences / executions
    sizes = sorted(int(b["batch_size"]) for b in stats.get("batch_stats", []))
    if live <= 1.0 or max(sizes, default=1) <= 1:
        raise Fail(f"{inferences} inferences in {executions} executions (batch sizes {sizes}): no batching happened; "
                   "send requests concurrently (concurrency > 1)")  # fmt: skip
    submitted = float(ctx.value("avg_batch"))
    if abs(submitted - live) > 0.02 * live:
        raise Fail(f"you computed {submitted:.2f}; the server's statistics give {inferences}/{executions} = {live:.2f}")
    return f"{inferences} inferences in {executions} executions: {live:.2f} requests per batch; sizes up to {sizes[-1]}"


@checkpoint(
    "lab3.benchmark_consistent",
    title="Your benchmark results agree with the server's own statistics",
    points=2,
    hint="Produce lab3_results.json only with the lab's cells (run_bench / sweep with save_to); the last run "
    "must be the confirm run on the server that is still running.",
)
def benchmark_consistent(ctx: Context) -> str:
    from tritonlab.labs.lab3 import CLASSIFIER

    table = _load_results(ctx)
    rows = list(table)
    if not rows:
        raise Fail(f"{ctx.path(RESULTS)} holds no measurements")
    for row in rows:
        problem = row.inconsistency()
        if problem:
            raise Fail(f"row '{row.label}' at concurrency {row.concurrency}: {problem}")
    measured = [r for r in rows if r.model == CLASSIFIER and r.server_stats]
    if not measured:
        raise Fail(f"no row for {CLASSIFIER} carries the server's statistics")
    from tritonlab.bench.stats import snapshot

    last = measured[-1].server_stats["after"]
    live = snapshot({"model_stats": [_model_stats(ctx, CLASSIFIER)]})  # the very counters the benchmark recorded
    for key in ("success_count", "execution_count"):
        if live[key] < int(last.get(key, 0)):
            raise Fail(
                f"the last row says the server had {last.get(key)} {key.replace('_', ' ')}s; it has {live[key]}: was "
                "it measured on another server (or reloaded since)? Re-run the confirm run."
            )
    if live["last_inference"] < int(last.get("last_inference", 0)):
        raise Fail("the last row's last inference is newer than the server's own: that run was not on this server")
    return f"{len(rows)} rows consistent; the last one matches the live server's statistics"


@checkpoint(
    "lab3.slo_choice",
    title="Your chosen configuration meets the SLO and beats no batching",
    points=2,
    hint=f"Measure a no-batching variant and your batching variants at concurrency {LOAD_CONCURRENCY}; choose "
    "the highest throughput whose p99 is within the SLO; load it on the server.",
)
def slo_choice(ctx: Context) -> str:
    from tritonlab.bench import BenchTable
    from tritonlab.labs.lab3 import CLASSIFIER, Variant

    slo = float(ctx.value("slo_p99_ms"))
    chosen = str(ctx.value("chosen"))
    rows = [r for r in _latest(list(_load_results(ctx))).values()
            if r.model == CLASSIFIER and r.concurrency == LOAD_CONCURRENCY and r.config]  # fmt: skip
    mine = next((r for r in rows if r.label == chosen), None)
    if mine is None:
        raise Fail(f"no measurement labelled {chosen!r} at concurrency {LOAD_CONCURRENCY} in {RESULTS}")
    baseline = [r for r in rows if not _variant(r.config).batching and r.config.get("instances", 1) == 1]
    if not baseline:
        raise Fail(f"no no-batching measurement (one instance) at concurrency {LOAD_CONCURRENCY} to compare with")
    if mine.p99_ms > slo:
        raise Fail(f"{chosen!r} has p99 {mine.p99_ms:.1f} ms, above your SLO of {slo:g} ms")
    base = baseline[-1]
    ratio = _ratio(mine.throughput, base.throughput, f"the no-batching row {base.label!r}")
    if ratio < MARGIN:
        raise Fail(f"{chosen!r} does {mine.throughput:.0f}/s, only {ratio:.2f}x no batching ({base.throughput:.0f}/s); "
                   f"expected at least {MARGIN}x")  # fmt: skip
    best = BenchTable(rows).best_under_slo(slo)  # not None: the chosen row itself meets the SLO
    if mine.throughput < 0.95 * best.throughput:
        raise Fail(f"{best.label!r} meets the SLO too and does {best.throughput:.0f}/s, more than {chosen!r} "
                   f"({mine.throughput:.0f}/s)")  # fmt: skip
    live = Variant.from_config("loaded", _loaded_config(ctx, CLASSIFIER))
    if not live.same_settings(_variant(mine.config, chosen)):
        raise Fail(f"the server runs classifier with {live.as_dict()}, not your choice {mine.config}: load it")
    return (f"{chosen!r}: {mine.throughput:.0f}/s at p99 {mine.p99_ms:.1f} ms ≤ {slo:g} ms, {ratio:.1f}x no batching; "
            "loaded on the server")  # fmt: skip


@checkpoint(
    "lab3.naive_baseline",
    title="Triton with dynamic batching vs the plain transformers pipeline, same client",
    points=1,
    needs_server=False,
    hint="Measure the naive server and text_classifier with the same run_bench call (protocol='http', "
    f"concurrency {LOAD_CONCURRENCY}), save both, and compute speedup = Triton's throughput / naive throughput.",
)
def naive_baseline(ctx: Context) -> str:
    from tritonlab.labs.lab3 import ENSEMBLE, NAIVE_LABEL

    rows = _latest(list(_load_results(ctx)))
    naive = rows.get((ENSEMBLE, NAIVE_LABEL, LOAD_CONCURRENCY))
    triton = [r for (model, label, conc), r in rows.items()
              if model == ENSEMBLE and label != NAIVE_LABEL and conc == LOAD_CONCURRENCY]  # fmt: skip
    if naive is None or not triton:
        raise Unattempted(f"{RESULTS} needs a '{NAIVE_LABEL}' row and a Triton row for {ENSEMBLE} at concurrency "
                          f"{LOAD_CONCURRENCY}")  # fmt: skip
    mine = triton[-1]
    if (naive.tool, naive.protocol) != (mine.tool, mine.protocol):
        raise Fail(f"not the same client: naive used {naive.tool}/{naive.protocol}, Triton {mine.tool}/{mine.protocol}")
    ratio = _ratio(mine.throughput, naive.throughput, f"the '{NAIVE_LABEL}' row")
    submitted = float(ctx.value("speedup"))
    if abs(submitted - ratio) > 0.02 * ratio:
        raise Fail(
            f"you computed {submitted:.2f}; the results give {mine.throughput:.0f}/{naive.throughput:.0f} = {ratio:.2f}"
        )
    return f"Triton {mine.throughput:.0f}/s vs naive {naive.throughput:.0f}/s at concurrency {LOAD_CONCURRENCY}: " + (
        f"{ratio:.1f}x"
    )


@checkpoint(
    "lab3.model_memory",
    title="You know how much memory the weights take",
    points=1,
    needs_server=False,
    hint="Sum numel() * element_size() over the model's parameters.",
)
def model_memory(ctx: Context) -> str:
    import torch

    from tritonlab.labs.lab3 import parameter_bytes

    want = parameter_bytes(torch.jit.load(str(_model_pt(ctx)), map_location="cpu"))
    submitted = int(ctx.value("param_bytes"))
    if submitted != want:
        raise Fail(f"you computed {submitted} bytes; model.pt's parameters take {want} bytes")
    return f"{want / 2**20:.2f} MiB of float32 weights in each instance (plus the runtime's own memory)"
