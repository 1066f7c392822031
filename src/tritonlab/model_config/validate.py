"""`tritonlab validate PATH`: the layout and config rules Triton 2.51 enforces, checked before a server starts.

PATH is a model directory (it holds config.pbtxt or version folders) or a repository (folders of models).
Every finding names the file, the line:column where known, what is wrong and the fix. Errors are what make
Triton refuse to load the model (each rule was checked against the embedded server, see
tests/model_config/corpus); warnings are what Triton accepts but is almost always a mistake. Validation never
raises, whatever the input.
"""

from __future__ import annotations

import ast
import errno
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from google.protobuf import text_format
from google.protobuf.message import Message

Severity = Literal["error", "warning"]

# Platforms Triton knows, and the backend each implies, with the file it loads from a version folder.
PLATFORMS = {
    "tensorrt_plan": ("tensorrt", "model.plan"),
    "onnxruntime_onnx": ("onnxruntime", "model.onnx"),
    "pytorch_libtorch": ("pytorch", "model.pt"),
    "tensorflow_savedmodel": ("tensorflow", "model.savedmodel"),
    "tensorflow_graphdef": ("tensorflow", "model.graphdef"),
    "ensemble": ("", ""),
}
BACKEND_FILES = {
    "python": "model.py",
    "pytorch": "model.pt",
    "onnxruntime": "model.onnx",
    "tensorrt": "model.plan",
    "openvino": "model.xml",
    "tensorflow": "model.savedmodel",
    "tensorrtllm": "",
}
EMBEDDED_BACKENDS = {"python"}  # plus the ensemble scheduler: what the nvidia-pytriton server can load
# Far above any real file (a large ensemble config is a few KB): beyond this a file is not read, only reported, so a
# stray 200 MB file costs no time and no memory.
MAX_CONFIG_BYTES = 4 * 2**20
MAX_MODEL_PY_BYTES = 16 * 2**20
MAX_DETAIL_CHARS = 200  # a parse error quotes the offending line: a huge or binary line is cut


@dataclass
class Finding:
    path: str
    line: int | None
    column: int | None
    severity: Severity
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "") + (f":{self.column}" if self.column else "")
        return f"{where}: {self.severity}: {self.message}\n    fix: {self.fix}"


@dataclass
class Report:
    path: str
    models: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def add(
        self,
        path: object,
        message: str,
        fix: str,
        severity: Severity = "error",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.findings.append(Finding(str(path), line, column, severity, message, fix))

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "valid": self.valid,
            "models": self.models,
            "findings": [asdict(f) for f in self.findings],
        }


@dataclass
class _Model:
    name: str
    directory: Path
    config_path: Path
    text: str = ""
    config: Message | None = None  # parsed ModelConfig, None if unreadable


def _model_config_class() -> type[Message]:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelConfig


def _ngc_image() -> str:
    from tritonlab.versions import manifest

    return manifest()["triton"]["ngc_image"]


def gpus_available() -> int:
    """How many NVIDIA GPUs this machine has (0 without a driver): KIND_GPU instances need one."""
    if shutil.which("nvidia-smi") is None:
        return 0
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def validate(path: str | Path, gpus: int | None = None) -> Report:
    """Validate a model directory or a repository. Never raises."""
    report = Report(str(path))
    try:
        _validate(Path(path), report, gpus_available() if gpus is None else gpus)
    except Exception as e:  # a validator bug must still come out as a finding, not a traceback
        report.add(str(path), f"the validator failed: {type(e).__name__}: {e}", "report this as a tritonlab bug")
    return report


def _is_model_dir(path: Path) -> bool:
    return (path / "config.pbtxt").exists() or any(p.is_dir() and p.name.isdigit() for p in _children(path))


def _children(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def _broken_link(path: Path) -> str | None:
    """Why ``path`` is a symbolic link that leads nowhere (a loop, or a missing target), else None."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a loop this way
        return "a symbolic link loop"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop"
    try:
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    except OSError:
        return "a symbolic link that leads nowhere"


def _unreadable_dir(path: Path) -> bool:
    return path.is_dir() and not os.access(path, os.R_OK | os.X_OK)


def _validate(path: Path, report: Report, gpus: int) -> None:
    try:
        path.lstat()
    except PermissionError:
        report.add(str(path), "cannot reach it: permission denied on a folder above it",
                   "give yourself access to the folders on the way (chmod u+x), or run as their owner")  # fmt: skip
        return
    except OSError:
        pass
    link = _broken_link(path)
    if link:
        report.add(str(path), f"{path} is {link}", "point the link at a model directory, or pass the real path")
        return
    try:
        path.stat()
    except OSError:
        report.add(str(path), "no such file or directory", "pass a model directory or a model repository")
        return
    if _unreadable_dir(path):
        report.add(str(path), "cannot read this directory (permission denied)",
                   f"give yourself access: chmod u+rx {path} (or run as its owner)")  # fmt: skip
        return
    if path.is_file():
        path = path.parent if path.name == "config.pbtxt" else path
        if path.is_file():
            report.add(str(path), "not a directory", "pass the model's directory (the one holding config.pbtxt)")
            return
    if _is_model_dir(path):
        repository, targets = path.parent, [path]
    else:
        repository, targets = path, [p for p in _children(path) if p.is_dir()]
        if not targets:
            report.add(
                str(path),
                "no models here: the directory is empty",
                "a repository holds one folder per model: <repo>/<model>/config.pbtxt",
            )
            return
    cache: dict[str, _Model] = {}
    for directory in targets:
        report.models.append(directory.name)
        model = _load(directory, cache)
        _check_model(model, repository, cache, report, gpus)


def read_config(directory: str | Path) -> Message | None:
    """A model directory's config.pbtxt as a ModelConfig; None if it is missing, too big, not text or not valid
    (``validate`` says which, with the line)."""
    return _load(Path(directory), {}).config


def _load(directory: Path, cache: dict[str, _Model]) -> _Model:
    if directory.name in cache:
        return cache[directory.name]
    model = _Model(directory.name, directory, directory / "config.pbtxt")
    cache[directory.name] = model
    try:
        if model.config_path.stat().st_size > MAX_CONFIG_BYTES:
            return model  # reported as too big, never read
        model.text = model.config_path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return model
    if "\x00" in model.text:
        return model  # reported as not text: Triton refuses NUL bytes
    config = _model_config_class()()
    try:
        text_format.Parse(model.text, config)
        model.config = config
    except text_format.ParseError:
        pass
    return model


def _locate(text: str, pattern: str, occurrence: int = 0) -> tuple[int | None, int | None]:
    """1-based line and column of the ``occurrence``-th match of ``pattern`` outside comments."""
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        for m in re.finditer(pattern, code):
            if count == occurrence:
                return number, m.start() + 1
            count += 1
    return None, None


class _Emitter:
    def __init__(self, model: _Model, report: Report):
        self.model, self.report = model, report

    def __call__(
        self,
        severity: Severity,
        message: str,
        fix: str,
        pattern: str | None = None,
        occurrence: int = 0,
        path: Path | None = None,
    ) -> None:
        line = column = None
        if pattern and path is None:
            line, column = _locate(self.model.text, pattern, occurrence)
        self.report.add(path or self.model.config_path, message, fix, severity, line, column)


def _check_model(model: _Model, repository: Path, cache: dict[str, _Model], report: Report, gpus: int) -> None:
    emit = _Emitter(model, report)
    if _unreadable_dir(model.directory):
        emit("error", "cannot read the model directory (permission denied): Triton cannot either",
             f"give read access: chmod -R a+rX {model.directory}", path=model.directory)  # fmt: skip
        return
    link = _broken_link(model.config_path)
    if link:
        emit("error", f"config.pbtxt is {link}", "replace the link with the config file itself")
        return
    if not model.config_path.exists():
        if any((v / "model.py").is_file() for v in _version_dirs(model.directory)):
            emit(
                "warning",
                "no config.pbtxt: Triton completes one from model.py (auto_complete_config), or serves "
                "the model with no declared inputs/outputs",
                "write config.pbtxt with backend, inputs and outputs",
            )
        else:
            emit("error", "no config.pbtxt", "write config.pbtxt: backend (or platform), max_batch_size, input, output")
        return
    if model.config is None:
        _report_unparseable(model, emit)
        return
    config: Any = model.config
    if not model.text.strip():
        emit(
            "warning",
            "config.pbtxt is empty: Triton infers the backend from the files and completes the rest",
            "write the config explicitly (backend, max_batch_size, input, output)",
        )
    if config.name and config.name != model.name:
        emit(
            "error",
            f"name is {config.name!r} but the directory is {model.name!r}: Triton refuses the model",
            f'set name: "{model.name}" (or rename the directory)',
            r"\bname\s*:",
        )
    backend = _check_platform_backend(model, emit)
    if config.max_batch_size < 0:
        emit(
            "error",
            f"max_batch_size is {config.max_batch_size}",
            "use 0 (no batching) or a positive batch size",
            r"\bmax_batch_size\b",
        )
    _check_tensors(model, emit)
    _check_scheduling(model, emit)
    _check_instances(model, emit, gpus)
    versions = _check_versions(model, emit)
    if backend and backend not in ("ensemble",):
        _check_model_files(model, backend, versions, emit)
    if config.platform == "ensemble":
        _check_ensemble(model, repository, cache, emit)


def _report_unparseable(model: _Model, emit: _Emitter) -> None:
    try:
        size = model.config_path.stat().st_size
        if model.config_path.is_dir():
            emit("error", "config.pbtxt is a directory", "remove that folder and write config.pbtxt as a text file")
            return
        if size > MAX_CONFIG_BYTES:
            emit("error", f"config.pbtxt is {_size(size)}, far beyond any model configuration (limit "
                 f"{_size(MAX_CONFIG_BYTES)}): not read", "replace it with the real config (a few KB)")  # fmt: skip
            return
        model.config_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        emit(
            "error",
            f"config.pbtxt is not text (byte {e.start} is not UTF-8)",
            "config.pbtxt is protobuf *text* format: recreate it in an editor",
        )
        return
    except OSError as e:
        emit("error", f"cannot read config.pbtxt: {e.strerror}",
             f"give read access: chmod a+r {model.config_path} (Triton must read it too)")  # fmt: skip
        return
    if "\x00" in model.text:
        offset = model.text.index("\x00")
        line = model.text.count("\n", 0, offset) + 1
        column = offset - (model.text.rfind("\n", 0, offset) + 1) + 1
        emit.report.add(model.config_path, "config.pbtxt is not text: it holds NUL bytes (Triton refuses "
                        "'invalid control characters')", "config.pbtxt is protobuf *text* format: recreate it in an "
                        "editor", line=line, column=column)  # fmt: skip
        return
    try:
        text_format.Parse(model.text, _model_config_class()())
    except text_format.ParseError as e:
        m = re.match(r"(\d+):(\d+) : (.*)", str(e), re.S)
        line, column, detail = (int(m[1]), int(m[2]), m[3]) if m else (None, None, str(e))
        if len(detail) > MAX_DETAIL_CHARS:  # it quotes the whole offending line
            detail = detail[: MAX_DETAIL_CHARS // 2] + " [...] " + detail[-MAX_DETAIL_CHARS // 2 :]
        fix = "fix the syntax at that position (fields are `key: value`, lists `[ a, b ]`, messages `{ ... }`)"
        if "has no field named" in detail:
            fix = "remove or rename that field: ModelConfig has no such field (see model_config.proto)"
        elif "Enum type" in detail or "has no value named" in detail:
            fix = "use one of the enum's values, e.g. TYPE_FP32, TYPE_INT64, TYPE_STRING, KIND_CPU, KIND_GPU"
        elif "oneof" in detail:
            fix = "keep one scheduler: dynamic_batching, sequence_batching or ensemble_scheduling"
        emit.report.add(model.config_path, f"config.pbtxt does not parse: {detail}", fix, line=line, column=column)


def _check_platform_backend(model: _Model, emit: _Emitter) -> str:
    config: Any = model.config
    platform, backend = config.platform, config.backend
    if platform and platform not in PLATFORMS:
        hint = ' (TensorRT-LLM models use backend: "tensorrtllm")' if "llm" in platform else ""
        emit(
            "error",
            f"unknown platform {platform!r}{hint}",
            f"use one of {', '.join(PLATFORMS)}, or a backend",
            r"\bplatform\s*:",
        )
        return ""
    if platform and backend:
        implied = PLATFORMS[platform][0]
        if implied != backend:
            emit(
                "warning",
                f"platform {platform!r} implies backend {implied!r} but backend is {backend!r}: Triton "
                "uses the backend",
                "keep only one of platform/backend",
                r"\bplatform\s*:",
            )
        return backend
    if platform == "ensemble":
        return "ensemble"
    if platform:
        return PLATFORMS[platform][0]
    if backend:
        return backend
    if any((v / "model.py").is_file() for v in _version_dirs(model.directory)):
        return "python"  # Triton infers the python backend from model.py
    emit(
        "error",
        "neither backend nor platform is set, and no model file tells Triton which backend to use",
        'add backend: "python" (or the backend your model needs)',
    )
    return ""


def _check_tensors(model: _Model, emit: _Emitter) -> None:
    config: Any = model.config
    for kind, tensors in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for index, tensor in enumerate(tensors):
            where = rf'\bname\s*:\s*"{re.escape(tensor.name)}"' if tensor.name else rf"\b{kind}\b"
            if not tensor.name:
                emit("error", f"{kind} #{index + 1} has no name", 'give it name: "..."', rf"\b{kind}\b")
            if tensor.name in seen:
                emit("warning", f"{kind} {tensor.name!r} is declared twice", "give each tensor its own name", where, 1)
            seen.add(tensor.name)
            if tensor.data_type == 0:
                emit(
                    "error",
                    f"{kind} {tensor.name!r} has no data_type",
                    "add data_type: TYPE_FP32 (or the right type)",
                    where,
                )
            for dim in tensor.dims:
                if dim == 0 or dim < -1:
                    emit(
                        "error",
                        f"{kind} {tensor.name!r} has dimension {dim}: each must be >= 1, or -1 for a variable size",
                        "fix dims (leave out the batch dimension when max_batch_size > 0)",
                        where,
                    )


def _check_scheduling(model: _Model, emit: _Emitter) -> None:
    config: Any = model.config
    if config.HasField("dynamic_batching"):
        for size in config.dynamic_batching.preferred_batch_size:
            if size > config.max_batch_size or size < 1:
                emit(
                    "error",
                    f"preferred_batch_size {size} is not within 1..max_batch_size ({config.max_batch_size})",
                    "use sizes between 1 and max_batch_size",
                    r"\bpreferred_batch_size\b",
                )


def _check_instances(model: _Model, emit: _Emitter, gpus: int) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    config: Any = model.config
    # proto3 cannot tell `count: 0` from no count (Triton's default, 1): look at the text.
    if _locate(model.text, r"\bcount\s*:\s*0\b")[0]:
        emit(
            "warning", "instance_group count 0: Triton runs 1 instance", "set count to 1 or more", r"\bcount\s*:\s*0\b"
        )
    for group in config.instance_group:
        if group.kind == mc.ModelInstanceGroup.KIND_GPU and gpus == 0:
            emit(
                "error",
                "KIND_GPU instance but this machine has no GPU: Triton will not load the model",
                "use kind: KIND_CPU here (or run on a GPU machine)",
                r"\bKIND_GPU\b",
            )
        for gpu in group.gpus:
            if gpus > 0 and gpu >= gpus:
                emit(
                    "error",
                    f"instance_group names GPU {gpu}, this machine has {gpus}",
                    "use existing GPU ids",
                    r"\bgpus\b",
                )


def _version_dirs(directory: Path) -> list[Path]:
    return [p for p in _children(directory) if p.is_dir() and p.name.isdigit()]


def _check_versions(model: _Model, emit: _Emitter) -> list[Path]:
    config: Any = model.config
    available = {int(p.name): p for p in _version_dirs(model.directory)}
    policy = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else "latest"
    if policy == "specific":
        wanted = list(config.version_policy.specific.versions)
        served = [available[v] for v in wanted if v in available]
        missing = [v for v in wanted if v not in available]
        if missing and served:
            emit(
                "warning",
                f"version_policy names versions {missing} that have no folder",
                "add the folders or drop them from the policy",
                r"\bspecific\b",
            )
    elif policy == "all":
        served = list(available.values())
    else:
        count = (
            config.version_policy.latest.num_versions if policy == "latest" and config.HasField("version_policy") else 1
        )
        served = [available[v] for v in sorted(available, reverse=True)[: max(count, 1)]]
    if not served:
        others = [p.name for p in _children(model.directory) if p.is_dir() and not p.name.isdigit()]
        detail = f" (folders {others} are not numbers)" if others else ""
        emit(
            "error",
            f"no version folder to serve under the {policy} version policy{detail}",
            "put the model in a numbered folder, e.g. <model>/1/",
            path=model.directory,
        )
    return served


def _check_model_files(model: _Model, backend: str, versions: list[Path], emit: _Emitter) -> None:
    config: Any = model.config
    filename = config.default_model_filename or BACKEND_FILES.get(backend, "")
    if backend not in EMBEDDED_BACKENDS:
        emit(
            "warning",
            f"backend {backend!r} is not in the embedded server (python and ensembles only): "
            "checked on layout and config",
            f"serve it from the NGC container {_ngc_image()}, which has that backend",
        )
    if not filename:
        return
    for version in versions:
        file = version / filename
        if not file.exists():
            default = " (set default_model_filename to use another name)" if not config.default_model_filename else ""
            emit(
                "error",
                f"version {version.name} has no {filename}: the {backend} backend loads that file{default}",
                f"put the model at {file}",
                path=version,
            )
        elif backend == "python" and file.is_file():
            _check_python_model(file, emit)


def _check_python_model(file: Path, emit: _Emitter) -> None:
    try:
        size = file.stat().st_size
        if size > MAX_MODEL_PY_BYTES:
            emit("warning", f"{file.name} is {_size(size)}: too big to check here", "keep model.py to the code; "
                 "put weights in separate files it loads", path=file)  # fmt: skip
            return
        source = file.read_text()
        tree = ast.parse(source, filename=str(file))
    except SyntaxError as e:
        emit.report.add(file, f"model.py does not compile: {e.msg}", "fix the Python syntax there", line=e.lineno,
                        column=e.offset)  # fmt: skip
        return
    except (OSError, UnicodeDecodeError) as e:
        emit("error", f"cannot read {file.name}: {e}", "check the file", path=file)
        return
    if not any(isinstance(n, ast.ClassDef) and n.name == "TritonPythonModel" for n in tree.body):
        emit(
            "error",
            f"{file.name} defines no class TritonPythonModel: the python backend looks for that class",
            "define class TritonPythonModel with an execute(self, requests) method",
            path=file,
        )


def _io_types(config: Any) -> tuple[dict[str, int], dict[str, int]]:
    return {t.name: t.data_type for t in config.input}, {t.name: t.data_type for t in config.output}


def _check_ensemble(model: _Model, repository: Path, cache: dict[str, _Model], emit: _Emitter) -> None:
    config: Any = model.config
    from tritonclient.grpc import model_config_pb2 as mc

    type_name = mc.DataType.Name
    if not config.HasField("ensemble_scheduling") or not config.ensemble_scheduling.step:
        emit(
            "error",
            'platform "ensemble" needs ensemble_scheduling with at least one step',
            "add ensemble_scheduling { step [ { model_name: ... input_map {...} output_map {...} } ] }",
            r"\bplatform\s*:",
        )
        return
    ens_inputs, ens_outputs = _io_types(config)
    produced: dict[str, int] = dict(ens_inputs)  # tensor -> data type known so far
    consumed: set[str] = set()
    for index, step in enumerate(config.ensemble_scheduling.step):
        where = rf'\bmodel_name\s*:\s*"{re.escape(step.model_name)}"'
        target_dir = repository / step.model_name
        if not step.model_name or not target_dir.is_dir():
            emit(
                "error",
                f"step {index + 1} uses model {step.model_name!r}, which is not in the repository",
                f"add {target_dir} or fix model_name",
                where,
            )
            continue
        target = _load(target_dir, cache)
        if target.config is None:
            continue  # reported when that model is validated
        t_inputs, t_outputs = _io_types(target.config)
        if config.max_batch_size > target.config.max_batch_size:
            emit(
                "error",
                f"ensemble max_batch_size {config.max_batch_size} is above {step.model_name}'s "
                f"{target.config.max_batch_size}",
                "lower the ensemble's max_batch_size",
                r"\bmax_batch_size\b",
            )
        for key, tensor in step.input_map.items():
            consumed.add(tensor)
            if t_inputs and key not in t_inputs:
                emit(
                    "error",
                    f"step {step.model_name}: input_map key {key!r} is not an input of {step.model_name} "
                    f"(inputs: {', '.join(t_inputs)})",
                    "input_map keys are the step model's input names",
                    where,
                )
            elif tensor in produced and key in t_inputs and produced[tensor] != t_inputs[key]:
                emit(
                    "error",
                    f"ensemble tensor {tensor!r} is {type_name(produced[tensor])} but {step.model_name} "
                    f"input {key!r} is {type_name(t_inputs[key])}",
                    "make the data types agree",
                    where,
                )
        for key, tensor in step.output_map.items():
            if t_outputs and key not in t_outputs:
                emit(
                    "error",
                    f"step {step.model_name}: output_map key {key!r} is not an output of "
                    f"{step.model_name} (outputs: {', '.join(t_outputs)})",
                    "output_map keys are the step model's output names",
                    where,
                )
                continue
            produced[tensor] = t_outputs.get(key, 0)
            if tensor in ens_outputs and ens_outputs[tensor] != produced[tensor] and produced[tensor]:
                emit(
                    "error",
                    f"ensemble output {tensor!r} is {type_name(ens_outputs[tensor])} but "
                    f"{step.model_name} produces {type_name(produced[tensor])}",
                    "make the data types agree",
                    where,
                )
    for name in ens_outputs:
        if name not in produced or name in ens_inputs:
            emit(
                "error",
                f"ensemble output {name!r} is produced by no step",
                "map a step output to it in output_map",
                rf'\bname\s*:\s*"{re.escape(name)}"',
            )
    for name in ens_inputs:
        if name not in consumed:
            emit(
                "error",
                f"ensemble input {name!r} is used by no step",
                "map it in a step's input_map, or remove it",
                rf'\bname\s*:\s*"{re.escape(name)}"',
            )
