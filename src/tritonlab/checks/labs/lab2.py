"""Lab 2 (02_repository) checkpoints: configs you wrote, as files and as the live server loaded them."""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import text_format

from tritonlab.checks.core import Context, Fail, Unattempted, checkpoint
from tritonlab.labs.lab2 import RAW_EXAMPLE, classify, pipeline, scale

REPO = "lab2_repo"


def _config(ctx: Context, model: str) -> Any:
    from tritonclient.grpc import model_config_pb2

    path = ctx.path(f"{REPO}/{model}/config.pbtxt")
    if not path.is_file():
        raise Unattempted(f"{path} does not exist yet")
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise Fail(f"{path} does not parse: {e}") from None


def _tensor(config: Any, kind: str, name: str, dtype: str, dims: list[int]) -> None:
    from tritonclient.grpc import model_config_pb2

    tensors = {t.name: t for t in getattr(config, kind)}
    if name not in tensors:
        raise Fail(f"{kind} {name!r} is missing (found: {', '.join(tensors) or 'none'})")
    found = model_config_pb2.DataType.Name(tensors[name].data_type)
    if found != dtype or list(tensors[name].dims) != dims:
        raise Fail(
            f"{kind} {name!r} is {found} {list(tensors[name].dims)}, expected {dtype} {dims} "
            "(dims leave out the batch dimension)"
        )


@checkpoint(
    "lab2.configs_valid",
    title="Every config in your repository is valid",
    points=1,
    needs_server=False,
    hint="Run `tritonlab validate lab2_repo` in a terminal: it names the file, line and fix for each error.",
)
def configs_valid(ctx: Context) -> str:
    from tritonlab.model_config import validate

    repo = ctx.path(REPO)
    if not repo.is_dir():
        raise Unattempted(f"{repo} does not exist yet: run the cell that prepares the repository")
    report = validate(repo)
    if not report.valid:
        shown = "\n".join(str(f) for f in report.errors[:3])
        raise Fail(f"{len(report.errors)} error(s) in {repo}:\n{shown}")
    return f"{len(report.models)} models, all valid ({len(report.findings)} warning(s))"


@checkpoint(
    "lab2.classifier_config",
    title="classifier's config says what the lab asks for",
    points=2,
    needs_server=False,
    hint="max_batch_size 8; FEATURES FP32 [4] -> LOGITS FP32 [3]; dynamic_batching with "
    "preferred_batch_size [4, 8] and max_queue_delay_microseconds 500; instance_group KIND_CPU count 2; "
    "a version_policy that serves versions 1 and 2.",
)
def classifier_config(ctx: Context) -> str:
    config = _config(ctx, "classifier")
    if config.name not in ("", "classifier") or config.backend != "python":
        raise Fail(
            f'name must be "classifier" (or left out) and backend "python"; found {config.name!r}, {config.backend!r}'
        )
    if config.max_batch_size != 8:
        raise Fail(f"max_batch_size is {config.max_batch_size}, expected 8")
    _tensor(config, "input", "FEATURES", "TYPE_FP32", [4])
    _tensor(config, "output", "LOGITS", "TYPE_FP32", [3])
    if not config.HasField("dynamic_batching"):
        raise Fail("no dynamic_batching block: without it Triton runs every request on its own")
    batching = config.dynamic_batching
    if list(batching.preferred_batch_size) != [4, 8] or batching.max_queue_delay_microseconds != 500:
        raise Fail(
            f"dynamic_batching has preferred_batch_size {list(batching.preferred_batch_size)} and "
            f"max_queue_delay_microseconds {batching.max_queue_delay_microseconds}; expected [4, 8] and 500"
        )
    from tritonclient.grpc import model_config_pb2

    groups = [(g.kind, g.count) for g in config.instance_group]
    if len(groups) != 1 or groups[0] != (model_config_pb2.ModelInstanceGroup.KIND_CPU, 2):
        raise Fail(f"instance_group should be one group of 2 KIND_CPU instances; found {len(groups)} group(s)")
    policy = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else "latest"
    both = (
        policy == "all"
        or (policy == "latest" and config.version_policy.latest.num_versions >= 2)
        or (policy == "specific" and {1, 2} <= set(config.version_policy.specific.versions))
    )
    if not both:
        raise Fail(
            f"the version policy ({policy}) does not serve both versions 1 and 2 (the default serves only the latest)"
        )
    return f"classifier: batch 8, preferred [4, 8] within 500 µs, 2 CPU instances, versions 1 and 2 ({policy})"


@checkpoint(
    "lab2.ensemble_config",
    title="pipeline chains scale -> classifier -> argmax",
    points=2,
    needs_server=False,
    hint='platform "ensemble", max_batch_size 8, input RAW FP32 [4], output LABEL '
    "INT32 [1], and three steps whose input_map/output_map connect RAW -> FEATURES -> LOGITS -> LABEL.",
)
def ensemble_config(ctx: Context) -> str:
    config = _config(ctx, "pipeline")
    if config.platform != "ensemble":
        raise Fail(f'platform is {config.platform!r}, expected "ensemble"')
    if config.max_batch_size != 8:
        raise Fail(f"max_batch_size is {config.max_batch_size}, expected 8 (no more than its steps allow)")
    _tensor(config, "input", "RAW", "TYPE_FP32", [4])
    _tensor(config, "output", "LABEL", "TYPE_INT32", [1])
    steps = [s.model_name for s in config.ensemble_scheduling.step]
    if steps != ["scale", "classifier", "argmax"]:
        raise Fail(f"steps are {steps}, expected ['scale', 'classifier', 'argmax']")
    from tritonlab.model_config import validate

    errors = validate(ctx.path(f"{REPO}/pipeline")).errors
    if errors:
        raise Fail("the ensemble's wiring is wrong:\n" + "\n".join(str(e) for e in errors[:3]))
    return "pipeline: RAW -> scale -> classifier -> argmax -> LABEL, wired consistently"


@checkpoint(
    "lab2.loaded_config",
    title="The server loaded classifier with your settings",
    points=1,
    hint="Start the server on lab2_repo in explicit mode and load classifier (or pipeline) through the API.",
)
def loaded_config(ctx: Context) -> str:
    status, config = ctx.server_get("/v2/models/classifier/config")
    if status != 200 or not isinstance(config, dict):
        raise Fail(f"the server has no classifier loaded (HTTP {status}): load it through the API")
    preferred = [int(x) for x in config.get("dynamic_batching", {}).get("preferred_batch_size", [])]
    counts = [g.get("count") for g in config.get("instance_group", [])]
    if config.get("max_batch_size") != 8 or preferred != [4, 8] or counts != [2]:
        raise Fail(
            f"as loaded: max_batch_size {config.get('max_batch_size')}, preferred {preferred}, "
            f"instances {counts}; expected 8, [4, 8], [2]"
        )
    return "the config Triton reports for classifier matches yours"


def _output(outputs: dict[str, np.ndarray], name: str, model: str) -> np.ndarray:
    if name not in outputs:
        raise Fail(f"{model} returned {sorted(outputs)}, no {name}")
    return outputs[name]


@checkpoint(
    "lab2.versions_served",
    title="Versions 1 and 2 of classifier are both served",
    points=2,
    hint="Put classifier_v2.py at lab2_repo/classifier/2/model.py and a version_policy that serves both; "
    "then (re)load classifier.",
)
def versions_served(ctx: Context) -> str:
    features = scale(np.array(RAW_EXAMPLE, np.float32))
    for version in (1, 2):
        status, _ = ctx.server_get(f"/v2/models/classifier/versions/{version}/ready")
        if status != 200:
            raise Fail(f"classifier version {version} is not ready (HTTP {status})")
        got = _output(ctx.server_infer("classifier", {"FEATURES": features}, str(version)), "LOGITS", "classifier")
        if not np.allclose(got, classify(features, version), atol=1e-5):
            raise Fail(
                f"classifier version {version} does not answer like model {version}: is {REPO}/classifier/"
                f"{version}/model.py the right file?"
            )
    return "versions 1 and 2 are ready and each answers with its own weights"


@checkpoint(
    "lab2.ensemble_answer",
    title="The ensemble answers end to end",
    points=2,
    hint="Load pipeline through the API (it loads its steps), then it should return LABEL for RAW.",
)
def ensemble_answer(ctx: Context) -> str:
    raw = np.array(RAW_EXAMPLE, np.float32)
    got = _output(ctx.server_infer("pipeline", {"RAW": raw}), "LABEL", "pipeline").astype(int)
    want = pipeline(raw, version=2)
    if got.tolist() != want.tolist():
        raise Fail(f"pipeline returned {got.tolist()} for {RAW_EXAMPLE}, expected {want.tolist()}")
    return f"pipeline({RAW_EXAMPLE}) = {got.ravel().tolist()}, as scale -> classifier v2 -> argmax gives"


@checkpoint(
    "lab2.explicit_control",
    title="You loaded and unloaded a model through the API",
    points=1,
    hint="With model_control_mode='explicit': server.load_model('scratch'), then server.unload_model('scratch').",
)
def explicit_control(ctx: Context) -> str:
    status, index = ctx.server_post("/v2/repository/index", {})
    if status != 200 or not isinstance(index, list):
        raise Fail(f"POST /v2/repository/index answered HTTP {status}: start the server in explicit mode")
    states = {m.get("name"): m for m in index}
    scratch = states.get("scratch", {})
    if scratch.get("state") != "UNAVAILABLE" or scratch.get("reason") != "unloaded":
        found = f"in state {scratch['state']}" if scratch.get("state") else "not loaded (never was)"
        raise Fail(f"scratch is {found}: load it, then unload it through the API")
    if states.get("pipeline", {}).get("state") != "READY":
        raise Fail("pipeline is not loaded: load it through the API")
    return "the repository index shows scratch unloaded by the API and pipeline ready"
