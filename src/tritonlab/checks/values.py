"""Values a learner submits to a checkpoint, as JSON: numbers, strings, lists, dicts, numpy arrays, functions.

A function travels as its source code (``inspect.getsource``). The checker reads it back as a
:class:`SubmittedFunction` and never runs it: :mod:`tritonlab.checks.learner` rebuilds and calls it in a worker
process of its own. That is what lets a check call the learner's readiness probe against a stopped server without
trusting the notebook, or letting the learner's code near the checker's verdict.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SubmissionError(ValueError):
    """A value cannot be submitted (say which and why)."""


@dataclass(frozen=True)
class SubmittedFunction:
    """A submitted function as data: its name, source and the globals it reads (see ``_referenced_globals``)."""

    name: str
    source: str
    globals: dict[str, Any]


def encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if callable(value) and hasattr(value, "__code__"):
        if value.__name__ == "<lambda>":
            raise SubmissionError("submit a function defined with def, not a lambda (its source cannot be rebuilt)")
        try:
            source = textwrap.dedent(inspect.getsource(value))
        except (OSError, TypeError) as e:
            raise SubmissionError(f"cannot read the source of {value.__name__}: define it in a notebook cell") from e
        return {"__function__": value.__name__, "source": source, "globals": _referenced_globals(value)}
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        import numpy as np

        array = np.asarray(value)
        return {"__ndarray__": array.tolist(), "dtype": str(array.dtype), "shape": list(array.shape)}
    raise SubmissionError(
        f"cannot submit a {type(value).__name__}: submit numbers, strings, lists, arrays or functions"
    )


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__ndarray__" in value:
            import numpy as np

            return np.asarray(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        if "__function__" in value:
            name, source, spec = value["__function__"], value.get("source"), value.get("globals", {})
            if not (isinstance(name, str) and isinstance(source, str) and isinstance(spec, dict)):
                raise ValueError("a submitted function needs a name, its source and a dict of globals")
            return SubmittedFunction(name, source, spec)
        return {k: decode(v) for k, v in value.items()}
    return value


def rebuild(function: SubmittedFunction) -> Callable[..., Any]:
    """Run the submitted source and return the function it defines. Learner code: only ever called in a learner
    worker process (``checks.learner``), never in the checker."""
    namespace = _rebuild_globals(function.globals)
    exec(compile(function.source, f"<submitted {function.name}>", "exec"), namespace)
    return namespace[function.name]


def _referenced_globals(fn: types.FunctionType) -> dict[str, Any]:
    """What the function's code reads from the notebook's globals: imports and plain constants.

    A notebook imports at the top (``import urllib.request``) and the function only says ``urllib.request``;
    the checker must rebuild those names, including submodules the notebook had loaded.
    """
    names = _code_names(fn.__code__)
    found: dict[str, Any] = {}
    for name in names:
        if name not in fn.__globals__:
            continue
        obj = fn.__globals__[name]
        if isinstance(obj, types.ModuleType):
            submodules = [f"{obj.__name__}.{n}" for n in names if f"{obj.__name__}.{n}" in sys.modules]
            found[name] = {"module": obj.__name__, "submodules": submodules}
        elif getattr(obj, "__module__", "__main__") not in ("__main__", "builtins", None) and hasattr(
            obj, "__qualname__"
        ):
            found[name] = {"from": obj.__module__, "import": obj.__qualname__}
        elif obj is None or isinstance(obj, bool | int | float | str):
            found[name] = {"value": obj}
    return found


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _rebuild_globals(spec: dict[str, Any]) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    for name, entry in spec.items():
        if not isinstance(entry, dict):
            continue  # not what encode() writes: the function meets a NameError, which the check reports
        try:
            if "module" in entry:
                for submodule in entry.get("submodules", []):
                    importlib.import_module(submodule)
                namespace[name] = importlib.import_module(entry["module"])
            elif "from" in entry:
                obj: Any = importlib.import_module(entry["from"])
                for part in entry["import"].split("."):
                    obj = getattr(obj, part)
                namespace[name] = obj
            else:
                namespace[name] = entry["value"]
        except (ImportError, AttributeError):
            pass  # the function will raise NameError when it uses it, which the check reports
    return namespace
