"""The tensors a benchmark sends: one sample per input, given or generated from the model's configuration.

One ``InputSet`` feeds both tools: the builtin generator serialises it once into a binary request, and
``write_perf_analyzer_json`` writes the same values in perf_analyzer's ``--input-data`` format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from tritonlab.errors import TritonLabError

if TYPE_CHECKING:  # pragma: no cover
    from tritonlab.server.base import Server

BYTES_SAMPLE = b"tritonlab"  # short and valid UTF-8, so tokenizers and JSON both accept it


def numpy_dtype(datatype: str) -> Any:
    """The numpy dtype Triton's client uses for a tensor datatype ("FP32", "BYTES", "BF16" ...)."""
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(datatype)
    if dtype is None:
        raise TritonLabError(f"unknown Triton datatype {datatype!r}", fix="use FP32, FP16, INT64, BYTES, BOOL ...")
    return dtype


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """The raw little-endian bytes Triton expects for ``array`` (length-prefixed strings for BYTES)."""
    from tritonclient.utils import serialize_bf16_tensor, serialize_byte_tensor

    if datatype in ("BYTES", "BF16"):
        serialized = (serialize_byte_tensor if datatype == "BYTES" else serialize_bf16_tensor)(array)
        if isinstance(serialized, np.ndarray):
            return serialized.item() if serialized.size else b""
        return bytes(serialized)
    return np.ascontiguousarray(array).tobytes()


@dataclass
class InputSet:
    """One sample per model input (name → numpy array), and how to turn it into a request.

    If the model batches (``max_batch_size > 0``) each sample excludes the batch dimension and ``batch(n)``
    stacks ``n`` copies of it; otherwise the sample is the whole tensor.
    """

    samples: dict[str, np.ndarray]
    datatypes: dict[str, str]
    batching: bool = True
    outputs: tuple[str, ...] = ()  # output names to ask for (binary) over HTTP; empty: all
    max_batch_size: int = 0  # 0: unknown or no batching

    # ------------------------------------------------------------------ building
    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, Any], *, batching: bool = True, datatypes: Mapping[str, str] | None = None
    ) -> InputSet:
        """Samples given explicitly; datatypes are read from the arrays unless given ("BYTES" for strings)."""
        from tritonclient.utils import np_to_triton_dtype

        samples, types = {}, {}
        for name, value in arrays.items():
            datatype = (datatypes or {}).get(name)
            array = np.asarray(value, dtype=numpy_dtype(datatype) if datatype else None)
            if array.dtype.kind in "USO":  # strings become Triton BYTES
                array = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(array)
                datatype = datatype or "BYTES"
            samples[name] = array
            types[name] = datatype or np_to_triton_dtype(array.dtype)
        return cls(samples, types, batching=batching)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        shapes: Mapping[str, list[int]] | None = None,
        arrays: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> InputSet:
        """Samples for every required input of a model configuration (as Triton returns it from /config).

        Floats are random normal, integers zeros (random ids can fall outside an embedding table), BYTES a
        short string. Dims of -1 must be given in ``shapes`` (without the batch dimension if the model batches).
        """
        name = config.get("name", "?")
        max_batch_size = int(config.get("max_batch_size", 0))
        specs = [spec for spec in config.get("input", []) if not spec.get("optional")]
        known = {spec["name"] for spec in config.get("input", [])}
        for given in (shapes or {}, arrays or {}):
            unknown = sorted(set(given) - known)
            if unknown:
                raise TritonLabError(
                    f"model {name!r} has no input named {', '.join(map(repr, unknown))}",
                    fix=f"its inputs are: {', '.join(sorted(known)) or '(none)'}",
                )
        rng = np.random.default_rng(seed)
        samples, datatypes = {}, {}
        for spec in specs:
            input_name, datatype = spec["name"], str(spec["data_type"]).removeprefix("TYPE_")
            datatype = "BYTES" if datatype == "STRING" else datatype
            datatypes[input_name] = datatype
            if arrays and input_name in arrays:
                samples[input_name] = InputSet.from_arrays(
                    {input_name: arrays[input_name]}, datatypes={input_name: datatype}
                ).samples[input_name]
                continue
            shape = [int(d) for d in (shapes or {}).get(input_name, spec.get("dims", []))]
            if any(d < 0 for d in shape):
                dims = ",".join(str(int(d)) for d in spec.get("dims", []))
                raise TritonLabError(
                    f"input {input_name!r} of model {name!r} has a variable dimension (dims [{dims}]): "
                    "the benchmark needs a concrete shape",
                    fix=f"pass shapes={{{input_name!r}: [...]}} (CLI: --shape {input_name}:d1,d2)"
                    + (", without the batch dimension" if max_batch_size > 0 else ""),
                )
            samples[input_name] = _generate(datatype, shape, rng)
        outputs = tuple(spec["name"] for spec in config.get("output", []))
        return cls(samples, datatypes, batching=max_batch_size > 0, outputs=outputs, max_batch_size=max_batch_size)

    @classmethod
    def from_model(
        cls,
        target: Server | str,
        model: str,
        *,
        shapes: Mapping[str, list[int]] | None = None,
        arrays: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> InputSet:
        """Read ``model``'s configuration from a running server (a ``Server`` or its HTTP URL) and build samples."""
        from tritonlab.bench.stats import get_json

        http_url = target if isinstance(target, str) else target.http_url
        config = get_json(
            http_url,
            f"/v2/models/{quote(model, safe='')}/config",
            what=f"the configuration of model {model!r}",
            fix="check the model name and that it is loaded (`tritonlab status`, server.repository_index())",
        )
        return cls.from_config(config, shapes=shapes, arrays=arrays, seed=seed)

    # ------------------------------------------------------------------ using
    def batch(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """The tensors of one request: ``batch_size`` copies of each sample stacked (if the model batches)."""
        if not self.batching:
            if batch_size != 1:
                raise TritonLabError(
                    f"batch_size={batch_size}, but the model does not batch (max_batch_size 0)",
                    fix="use batch_size=1, or give the model max_batch_size > 0",
                )
            return dict(self.samples)
        if self.max_batch_size and batch_size > self.max_batch_size:
            raise TritonLabError(
                f"batch_size={batch_size} is above the model's max_batch_size {self.max_batch_size}",
                fix=f"use batch_size <= {self.max_batch_size}",
            )
        return {name: np.repeat(sample[np.newaxis], batch_size, axis=0) for name, sample in self.samples.items()}

    def write_perf_analyzer_json(self, path: str | Path) -> Path:
        """perf_analyzer's --input-data file holding these samples (it adds the batch dimension itself, with -b)."""
        data = {}
        for name, sample in self.samples.items():
            flat = sample.reshape(-1)
            if self.datatypes[name] == "BYTES":
                content: list[Any] = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
            else:
                content = flat.tolist()
            data[name] = {"content": content, "shape": list(sample.shape)}
        path = Path(path)
        path.write_text(json.dumps({"data": [data]}))
        return path

    def describe(self) -> str:
        return ", ".join(f"{n} {self.datatypes[n]}{list(s.shape)}" for n, s in self.samples.items())


def _generate(datatype: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if datatype == "BYTES":
        return np.full(shape, BYTES_SAMPLE, dtype=object)
    dtype = numpy_dtype(datatype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)  # ints and bools: zeros are valid everywhere (ids, masks, lengths)
