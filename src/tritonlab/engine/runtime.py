"""The embedded engine's runtime: load a built engine, its KV cache, and the batching loop that drives it.

Self-contained on purpose (torch and the standard library only, no tritonlab import): the Triton model
``llm`` copies this file beside its ``model.py``, so the same code serves in the embedded server and in a
container, and the package uses it in-process for tests and notebooks.

KV cache
--------
Each running sequence owns one *slot* of a cache preallocated when the engine loads::

    k_cache, v_cache: [layers, max_batch_size slots, kv_heads, max_seq_len, head_size]

A step computes keys and values only for its new tokens and writes them at the sequence's next positions; every
earlier token's keys/values are read back instead of recomputed, so a decode step costs one token of compute per
sequence plus reading its cache: its own length with ragged attention (CPU engines), the batch's longest with padded
attention (GPU engines); never the empty rows. Preallocating ``max_seq_len`` positions per slot means a request
that fits the build limits can never run out of cache mid-generation, at the price of reserving memory for the
longest possible sequence (paged KV caches, as in TensorRT-LLM and vLLM, hand out fixed-size blocks on demand
instead). Memory::

    bytes per token = 2 (K and V) x layers x kv_heads x head_size x bytes per element
    total           = bytes per token x max_seq_len x max_batch_size

Devices
-------
An engine built for ``cuda`` holds GPU machine code for one compute capability; it loads on that GPU (by default
GPU 0, or ``device="cuda:N"``), its KV cache lives in GPU memory, and each step's token ids go to the GPU and the
chosen next tokens come back (a few bytes per sequence). ``check_device`` refuses it on a CPU or another GPU.

Packed steps
------------
A CPU engine's step takes one row per token, without padding (TensorRT-LLM's ``remove_input_padding``): a prompt of
12 tokens is 12 rows of its slot at positions 0..11, a running sequence's new token one row, all in one call of at
most ``max_num_tokens`` rows (``max_batch_size`` x ``max_input_len``, recorded in the engine's config). The weights,
about 50 MB for the lab model, are read once per call whatever it holds: on a CPU that read is most of a small
step's cost (a decode step of 1 sequence costs 40 % of one of 16), so a prompt joining a step costs only its own
tokens' compute, where a call of its own would pay the read again. GPU engines (padded attention) prefill in a call
of their own.

Batching loop
-------------
- ``inflight`` (TensorRT-LLM's ``inflight_fused_batching``): before every step, queued requests take free slots
  and join that very step: their prompts (the context phase) and every running sequence's newest token (the
  generation phase) are packed into one call, so each new request's first token and every running sequence's next
  token come out of the same step, and the weights are read once for all of them; a sequence that reaches
  ``max_tokens`` (or ``</s>``) is sent its last token with the final flag in the same step and its slot is free for
  the next step.
- ``static`` (TensorRT-LLM's ``V1``): a batch is formed from the queue, then runs until its longest member is
  done; finished members keep being computed as padding, and queued requests wait for the whole batch.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

ENGINE_FILE = "rank0.pt2"
# The compiled step's interface (network.py); an engine built for another one must be built again. 2: the step
# takes the cache window (attention reads only the cached positions).
# 3: CPU engines call the ragged attention kernel (attention.py), a library beside the package.
# 4: CPU engines take packed steps (one row per token, up to max_num_tokens rows; the kernel lets the rows of one
# slot see each other), so a step can mix prompts with running sequences.
ENGINE_VERSION = "tritonlab-embedded-engine-4"
KERNEL_LIBRARY = "ragged_attention.so"  # attention.py writes it
STRATEGIES = {"inflight": "inflight", "inflight_fused_batching": "inflight", "static": "static", "V1": "static"}


class EngineMismatchError(RuntimeError):
    """The engine was built for another device class, CPU architecture/ISA, GPU or torch version."""

    def __init__(self, message: str, fix: str):
        self.fix = fix
        super().__init__(message)


class LimitError(ValueError):
    """A request does not fit the limits the engine was built with."""


# ---------------------------------------------------------------------------------------------- devices


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def device_record(device: str = "cpu") -> dict[str, Any]:
    """What a compiled engine depends on: device class, architecture and ISA (CPU) or GPU model, compute
    capability and CUDA version, and the torch version whose runtime loads the package."""
    record: dict[str, Any] = {"device_class": "cuda" if device.startswith("cuda") else "cpu"}
    record["arch"] = platform.machine()
    if record["device_class"] == "cuda":
        if not torch.cuda.is_available():
            raise EngineMismatchError(
                f"device {device!r}: this machine has no CUDA device torch can use (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda})",
                fix="use device='cpu' here, or run on a machine with an NVIDIA GPU and a CUDA build of torch",
            )
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        record["gpu_name"] = torch.cuda.get_device_name(index)
        # The kernels in the package are machine code for this architecture (sm_90 on Hopper): other GPUs
        # cannot run them.
        record["compute_capability"] = f"{major}.{minor}"
        record["cuda"] = torch.version.cuda
    else:
        # Inductor picks the C++ vector ISA (DEFAULT / AVX2 / AVX512 / ...) from this: code compiled for AVX512
        # dies with an illegal instruction on an AVX2-only CPU.
        record["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        record["cpu_model"] = _cpu_model()
    record["torch"] = torch.__version__
    return record


# Keys that must match exactly; cpu_model is recorded for information (same ISA, other model: still runs).
_MUST_MATCH = ("device_class", "arch", "cpu_capability", "gpu_name", "compute_capability", "cuda", "torch")


def check_device(built: dict[str, Any], here: dict[str, Any]) -> None:
    """Refuse an engine whose recorded device does not match this one, naming every difference."""
    diffs = [
        f"{key}: built for {built.get(key)!r}, this machine has {here.get(key)!r}"
        for key in _MUST_MATCH
        if key in built or key in here
        if built.get(key) != here.get(key)
    ]
    if diffs:
        raise EngineMismatchError(
            "this engine was compiled for another device and cannot run here (like a TensorRT engine moved "
            "to another GPU):\n  " + "\n  ".join(diffs),
            fix="build the engine again on this machine from the converted checkpoint (build_engine)",
        )


def _libstdcxx_global() -> None:
    """Make the C++ runtime torch already loaded visible to a compiled engine's wrapper library (CUDA package, CpuStep).

    Python loads torch's libraries (and with them libstdc++) with RTLD_LOCAL. Seen on the H200 (torch 2.11, CUDA
    13, GCC 13): the AOTInductor CUDA wrapper then crashed (SIGSEGV inside std::regex while parsing its device string)
    when loaded from a plain python3, while the Triton python-backend stub, which links libstdc++ itself, and
    python3 with LD_PRELOAD=libstdc++.so.6 loaded the same package fine. Promoting the loaded copy to global
    scope before loading the package does what the stub does."""
    import ctypes

    with contextlib.suppress(OSError):  # not loaded, or not Linux: nothing to promote
        ctypes.CDLL("libstdc++.so.6", mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)


# ---------------------------------------------------------------------------------------------- the compiled step


@functools.cache
def _capsules() -> tuple[Any, Any]:
    """(PyCapsule_GetPointer, PyCapsule_New) with private prototypes (setting restype on ctypes.pythonapi's own
    functions would change them for everyone)."""
    import ctypes

    pointer_of = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    capsule_of = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
        ("PyCapsule_New", ctypes.pythonapi)
    )
    return pointer_of, capsule_of


def tensor_handles(tensors: Any) -> list[int]:
    """New AOTInductor tensor handles (``AtenTensorHandle`` addresses) for ``tensors``: whoever receives them frees
    them (the compiled step does; a C shim only borrows its inputs)."""
    pointer_of = _capsules()[0]
    return [pointer_of(h, None) for h in torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(list(tensors))]


def tensors_from_handles(handles: Any) -> list[torch.Tensor]:
    """The tensors behind AOTInductor tensor handles, taking ownership of the handles."""
    capsule_of = _capsules()[1]
    return torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs([capsule_of(h, None, None) for h in handles])


class CpuStep:
    """The compiled CPU step called through the C entry points of its shared library, which releases the GIL while
    the step runs (ctypes does). The package loader's Python binding holds the GIL for the whole step: the thread
    that sends the tokens of the previous step (the Triton model's sender) could not run beside it, and every token's
    send would wait for the step to end. Same library, same kernels, same outputs (tested against the loader)."""

    def __init__(self, package: str, kernels: tuple[str, ...] | list[str] = ()):
        import ctypes
        import shutil
        import tempfile
        import weakref
        import zipfile

        with zipfile.ZipFile(package) as archive:
            libraries = [n for n in archive.namelist() if n.endswith(".so") and "/aotinductor/" in n]
            if len(libraries) != 1:
                raise EngineMismatchError(
                    f"{package}: expected one compiled library in the package, found {len(libraries)}",
                    fix="build the engine again (build_engine)",
                )
            # The library's whole folder, kept while the step lives: some torch versions map the weights from the
            # library file itself or from files beside it.
            folder = libraries[0].rsplit("/", 1)[0] + "/"
            self._dir = tempfile.mkdtemp(prefix="tritonlab-engine-")
            weakref.finalize(self, shutil.rmtree, self._dir, True)
            for name in archive.namelist():
                if name.startswith(folder) and not name.endswith("/"):
                    archive.extract(name, self._dir)
        _libstdcxx_global()  # the same std::regex crash as the CUDA wrapper's, on the H200's torch 2.11
        # Kernels the compiled step calls by name (the ragged attention's C shim): global, so the step's library
        # finds their symbols when it loads; kept referenced while the step lives.
        self._kernels = [ctypes.CDLL(path, mode=os.RTLD_GLOBAL) for path in kernels]
        self._lib = ctypes.CDLL(os.path.join(self._dir, libraries[0]))
        self._ct = ctypes
        self._handle = ctypes.c_void_p()
        self._check(self._lib.AOTInductorModelContainerCreateWithDevice(
            ctypes.byref(self._handle), ctypes.c_size_t(1), b"cpu", None))  # fmt: skip
        count = ctypes.c_size_t()
        self._check(self._lib.AOTInductorModelContainerGetNumOutputs(self._handle, ctypes.byref(count)))
        self._outputs = count.value

    def _check(self, code: int) -> None:
        if code != 0:
            raise RuntimeError(f"the compiled engine step failed (AOTInductor error {code}); see the log above")

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        ct = self._ct
        handles = tensor_handles(inputs)  # the library takes ownership of these (it frees them)
        outputs = (ct.c_void_p * self._outputs)()
        self._check(self._lib.AOTInductorModelContainerRun(
            self._handle, (ct.c_void_p * len(handles))(*handles), ct.c_size_t(len(handles)), outputs,
            ct.c_size_t(self._outputs), None, None))  # fmt: skip
        return tensors_from_handles(outputs)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._handle:
                self._lib.AOTInductorModelContainerDelete(self._handle)
                self._handle = self._ct.c_void_p()


# ---------------------------------------------------------------------------------------------- the engine


class Engine:
    """A loaded engine: the compiled step function, its build limits and its KV cache (see the module doc)."""

    def __init__(self, config: dict[str, Any], step: Callable[..., Any], device: str = "cpu"):
        pretrained, build = config["pretrained_config"], config["build_config"]
        self.config = config
        self.max_batch_size = int(build["max_batch_size"])
        self.max_input_len = int(build["max_input_len"])
        self.max_seq_len = int(build["max_seq_len"])
        self.max_num_tokens = int(build["max_num_tokens"])  # every engine of this format records it (build.py)
        # Packed steps (see the module doc): CPU engines with the ragged kernel; padded (GPU) engines prefill apart.
        self.packed = config.get("attention") == "ragged"
        self.layers = int(pretrained["num_hidden_layers"])
        self.kv_heads = int(pretrained["num_key_value_heads"])
        self.head_size = int(pretrained["head_size"])
        self.vocab_size = int(pretrained["vocab_size"])
        self.eos_id = pretrained.get("eos_token_id")
        self.dtype = getattr(torch, pretrained["dtype"])
        self.device = torch.device(device)
        self._step = step
        shape = (self.layers, self.max_batch_size, self.kv_heads, self.max_seq_len, self.head_size)
        self.k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self._windows: dict[int, torch.Tensor] = {}  # arange(L) per window size, made once

    @classmethod
    def load(cls, engine_dir: str, *, num_threads: int | None = None, device: str | None = None) -> Engine:
        """Load on ``device`` (default: the device class the engine was built for, ``cuda`` meaning GPU 0 when
        this machine has one, else ``cpu``); EngineMismatchError if the engine was built for another device."""
        with open(os.path.join(engine_dir, "config.json")) as f:
            config = json.load(f)
        if config.get("version") != ENGINE_VERSION:
            raise EngineMismatchError(
                f"this engine was built by another version of tritonlab (engine format {config.get('version')!r}, "
                f"this runtime loads {ENGINE_VERSION!r})",
                fix="build the engine again from the converted checkpoint (build_engine)",
            )
        built = config["device"]
        wants_gpu = built.get("device_class") == "cuda" and torch.cuda.is_available()
        device = device or ("cuda" if wants_gpu else "cpu")
        check_device(built, device_record(device))
        if num_threads:
            torch.set_num_threads(num_threads)
        index = (torch.device(device).index or 0) if device.startswith("cuda") else -1
        if index >= 0:
            torch.cuda.set_device(index)
            _libstdcxx_global()
        package = os.path.join(engine_dir, ENGINE_FILE)
        kernels = []
        if config.get("attention") == "ragged":
            kernels.append(os.path.join(engine_dir, KERNEL_LIBRARY))
            if not os.path.exists(kernels[0]):
                raise EngineMismatchError(
                    f"{engine_dir}: this engine calls the attention kernel {KERNEL_LIBRARY}, which is missing",
                    fix="copy the whole engine directory, or build the engine again (build_engine)",
                )
        if index < 0:
            step = CpuStep(package, kernels)
        else:
            step = torch._inductor.aoti_load_package(package, device_index=index)
        return cls(config, step, device if index < 0 else f"cuda:{index}")

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_size * self.k_cache.element_size()

    @property
    def kv_cache_bytes(self) -> int:
        return self.kv_bytes_per_token * self.max_seq_len * self.max_batch_size

    def check_request(self, prompt_len: int, max_tokens: int) -> None:
        """Raise LimitError (naming the limit and the fix) if a request cannot run on this engine."""
        if prompt_len < 1:
            raise LimitError("the prompt is empty: send at least one token")
        if prompt_len > self.max_input_len:
            raise LimitError(
                f"prompt has {prompt_len} tokens, more than this engine's max_input_len={self.max_input_len}; "
                f"shorten the prompt or rebuild the engine with a larger max_input_len"
            )
        if max_tokens < 1:
            raise LimitError(f"max_tokens={max_tokens}: ask for at least 1 output token")
        if prompt_len + max_tokens > self.max_seq_len:
            raise LimitError(
                f"prompt ({prompt_len} tokens) + max_tokens ({max_tokens}) = {prompt_len + max_tokens} exceeds this "
                f"engine's max_seq_len={self.max_seq_len} (input + output); ask for at most "
                f"{self.max_seq_len - prompt_len} tokens or rebuild with a larger max_seq_len"
            )

    def step(self, input_ids: torch.Tensor, start_pos: torch.Tensor, slots: torch.Tensor, window: int) -> torch.Tensor:
        """Run the compiled step, store the new tokens' keys/values in their slots, return logits [B, T, vocab].

        ``window``: the longest sequence of the batch after this step (padded attention reads that many cached
        positions, ragged attention each sequence's own; a Python int, so no GPU sync is needed to know it)."""
        if window not in self._windows:
            self._windows[window] = torch.arange(window, dtype=torch.int64, device=self.device)
        logits, new_k, new_v = self._step(input_ids, start_pos, slots, self.k_cache, self.v_cache,
                                          self._windows[window])  # fmt: skip
        steps = input_ids.shape[1]
        positions = start_pos[:, None] + torch.arange(steps, device=self.device)[None, :]  # [B, T]
        where = (slice(None), slots[:, None].expand_as(positions), slice(None), positions)
        # Indexing dims 1 and 3 puts the indexed [B, T] first: [B, T, layers, kv_heads, head_size].
        self.k_cache[where] = new_k.permute(1, 3, 0, 2, 4)
        self.v_cache[where] = new_v.permute(1, 3, 0, 2, 4)
        return logits

    def _check_slots(self, slots: list[int]) -> None:
        # The compiled step indexes the cache without bounds checks that Python could catch: a bad slot would abort
        # the whole process (a notebook's kernel, a Triton stub), not raise.
        if (
            not 0 < len(slots) <= self.max_batch_size
            or not all(0 <= s < self.max_batch_size for s in slots)
            or len(set(slots)) != len(slots)
        ):
            raise LimitError(
                f"cache slots {list(slots)}: this engine has max_batch_size={self.max_batch_size} slots, "
                f"0 to {self.max_batch_size - 1}; use a different one per running sequence"
            )

    def run(self, slots: list[int], new_tokens: list[list[int]], cached: list[int]) -> list[int]:
        """One packed step (CPU engines, see the module doc): sequence ``i`` in slot ``slots[i]`` has ``cached[i]``
        tokens in its cache and brings ``new_tokens[i]`` (a prompt, or the newest token of a running sequence);
        returns each sequence's greedy next token."""
        self._check_slots(slots)
        if not self.packed:
            raise LimitError("this engine prefills and decodes in separate calls: use prefill/decode")
        rows = sum(len(t) for t in new_tokens)
        if not all(new_tokens) or rows > self.max_num_tokens:
            raise LimitError(
                f"a step of {rows} tokens: this engine takes 1 to max_num_tokens={self.max_num_tokens} per step, "
                "and at least one per sequence"
            )
        longest = max(c + len(t) for c, t in zip(cached, new_tokens, strict=True))
        if longest > self.max_seq_len:
            raise LimitError(f"a sequence would reach {longest} tokens, beyond this engine's "
                             f"max_seq_len={self.max_seq_len}")  # fmt: skip
        ids = [token for tokens in new_tokens for token in tokens]
        start = [c + j for c, tokens in zip(cached, new_tokens, strict=True) for j in range(len(tokens))]
        where = [slot for slot, tokens in zip(slots, new_tokens, strict=True) for _ in tokens]
        last = [end - 1 for end in itertools.accumulate(len(tokens) for tokens in new_tokens)]  # each one's last row
        logits = self.step(
            torch.tensor(ids, dtype=torch.int64, device=self.device)[:, None],
            torch.tensor(start, dtype=torch.int64, device=self.device),
            torch.tensor(where, dtype=torch.int64, device=self.device),
            longest,
        )
        return logits[torch.tensor(last, device=self.device), -1].argmax(dim=-1).tolist()

    def prefill(self, slots: list[int], prompts: list[list[int]]) -> list[int]:
        """Put prompts into their slots' caches in one step; return each one's greedy first output token.

        A CPU engine packs them (:meth:`run`). A padded (GPU) engine pads shorter prompts on the right: the padding's
        keys/values land at positions the sequence has not reached yet, which no query can see (attention is masked
        by position) and the next decode steps overwrite.
        """
        if self.packed:
            return self.run(slots, prompts, [0] * len(prompts))
        self._check_slots(slots)
        width = max(len(p) for p in prompts)
        ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts], dtype=torch.int64, device=self.device)
        zero = torch.zeros(len(prompts), dtype=torch.int64, device=self.device)
        where = torch.tensor(slots, dtype=torch.int64, device=self.device)
        logits = self.step(ids, zero, where, width)
        last = torch.tensor([len(p) - 1 for p in prompts], device=self.device)
        return logits[torch.arange(len(prompts), device=self.device), last].argmax(dim=-1).tolist()

    def decode(self, slots: list[int], tokens: list[int], lengths: list[int]) -> list[int]:
        """One token for each sequence (``lengths``: tokens already in each slot's cache); greedy next tokens."""
        self._check_slots(slots)
        longest = max(lengths)
        if longest >= self.max_seq_len:
            raise LimitError(f"a sequence has {longest} cached tokens: no room for another below this engine's "
                             f"max_seq_len={self.max_seq_len}")  # fmt: skip
        ids = torch.tensor(tokens, dtype=torch.int64, device=self.device)[:, None]
        start = torch.tensor(lengths, dtype=torch.int64, device=self.device)
        where = torch.tensor(slots, dtype=torch.int64, device=self.device)
        return self.step(ids, start, where, longest + 1)[:, -1].argmax(dim=-1).tolist()

    def generate(self, prompt: list[int], max_tokens: int, slot: int = 0) -> list[int]:
        """Greedy generation of one sequence, in this process (the reference the served tokens are checked with)."""
        self.check_request(len(prompt), max_tokens)
        out = self.prefill([slot], [prompt])
        while len(out) < max_tokens:
            out += self.decode([slot], [out[-1]], [len(prompt) + len(out) - 1])
        return out


# ---------------------------------------------------------------------------------------------- batching


@dataclass(eq=False)  # identity: two requests with equal fields are still two requests
class Sequence:
    """One request inside the loop. ``emit(token, final)`` sends a token; ``fail(message)`` ends it with an error."""

    id: str
    prompt: list[int]
    max_tokens: int
    emit: Callable[[int, bool], None]
    fail: Callable[[str], None]
    stop_at_eos: bool = True
    slot: int = -1
    tokens: list[int] = field(default_factory=list)
    done: bool = False

    @property
    def cached(self) -> int:
        # The newest token is not in the cache yet: it is the input of the next decode step.
        return len(self.prompt) + len(self.tokens) - 1


class Batcher:
    """The scheduling loop (see the module doc), on its own thread. ``trace(event)`` receives one dict per
    admission, step and finish: the server-side record of who ran together."""

    def __init__(
        self,
        engine: Engine,
        strategy: str = "inflight",
        *,
        batch_wait_s: float = 0.005,
        trace: Callable[[dict[str, Any]], None] | None = None,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"batching strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        self.engine = engine
        self.strategy = STRATEGIES[strategy]
        self.batch_wait_s = batch_wait_s
        self.trace = trace or (lambda event: None)
        self.steps = 0
        self._queue: collections.deque[Sequence] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._free = list(range(engine.max_batch_size))
        self._thread = threading.Thread(target=self._run, name=f"{self.strategy}-batcher", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop; every request still queued or running gets its final response (an error), so no
        streaming client waits for tokens that will never come."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        with self._cond:
            queued = list(self._queue)
            self._queue.clear()
        for seq in queued:
            seq.done = True
            seq.fail("RuntimeError: the model is unloading; the request was not started")

    def submit(self, seq: Sequence) -> None:
        """Queue a request (LimitError if it cannot fit the engine: nothing is queued then)."""
        self.engine.check_request(len(seq.prompt), seq.max_tokens)
        with self._cond:
            self._queue.append(seq)
            self._cond.notify()

    def _run(self) -> None:
        loop = self._run_inflight if self.strategy == "inflight" else self._run_static
        if self.engine.device.type == "cuda":
            torch.cuda.set_device(self.engine.device)  # a new thread starts on GPU 0
        with torch.inference_mode():
            loop()

    def _wait_for_work(self, active: bool) -> bool:
        with self._cond:
            while not self._stop and not self._queue and not active:
                self._cond.wait(timeout=0.5)
            return not self._stop

    def _admit(self, limit: int) -> list[Sequence]:
        with self._cond:
            taken = []
            while self._queue and self._free and len(taken) < limit:
                seq = self._queue.popleft()
                seq.slot = self._free.pop(0)
                taken.append(seq)
            return taken

    def _prefill(self, seqs: list[Sequence]) -> None:
        """All newly admitted requests in one step (their first tokens go out at once)."""
        if not seqs:
            return
        self._trace_admissions(seqs)
        tokens = self.engine.prefill([s.slot for s in seqs], [s.prompt for s in seqs])
        for seq, token in zip(seqs, tokens, strict=True):
            self._advance(seq, token)

    def _trace_admissions(self, seqs: list[Sequence]) -> None:
        now = time.time()
        for seq in seqs:
            self.trace({"event": "admit", "t": now, "id": seq.id, "slot": seq.slot, "prompt": len(seq.prompt)})

    def _advance(self, seq: Sequence, token: int) -> None:
        seq.tokens.append(token)
        seq.done = len(seq.tokens) >= seq.max_tokens or (seq.stop_at_eos and token == self.engine.eos_id)
        seq.emit(token, seq.done)  # the last token carries the final flag: nothing waits for another step
        if seq.done:
            self.trace({"event": "finish", "t": time.time(), "id": seq.id, "tokens": len(seq.tokens)})

    def _release(self, seq: Sequence) -> None:
        with self._cond:
            self._free.append(seq.slot)

    def _retire_finished(self, active: list[Sequence]) -> list[Sequence]:
        """Free the finished sequences' slots (each serves a queued request at the very next step); the rest."""
        for seq in active:
            if seq.done:
                self._release(seq)
        return [s for s in active if not s.done]

    def _decode(self, batch: list[Sequence], running: list[Sequence]) -> None:
        """One decode step over ``batch``; only ``running`` members get their token (the rest are padding)."""
        self.steps += 1
        tokens = self.engine.decode([s.slot for s in batch], [s.tokens[-1] for s in batch], [s.cached for s in batch])
        self.trace({"event": "step", "t": time.time(), "step": self.steps, "ids": [s.id for s in running],
                    "batch": len(batch)})  # fmt: skip
        for seq, token in zip(batch, tokens, strict=True):
            if not seq.done and seq in running:
                self._advance(seq, token)

    def _fail_all(self, seqs: list[Sequence], exc: BaseException) -> None:
        for seq in seqs:
            if not seq.done:
                seq.done = True
                seq.fail(f"{type(exc).__name__}: {exc}")
            self._release(seq)

    def _fused_step(self, running: list[Sequence], admitted: list[Sequence]) -> None:
        """One packed step: the admitted requests' prompts and the running sequences' newest tokens together."""
        self._trace_admissions(admitted)
        batch = running + admitted
        self.steps += 1
        new_tokens = [[s.tokens[-1]] for s in running] + [s.prompt for s in admitted]
        tokens = self.engine.run([s.slot for s in batch], new_tokens, [s.cached for s in running] + [0] * len(admitted))
        self.trace({"event": "step", "t": time.time(), "step": self.steps, "ids": [s.id for s in batch],
                    "batch": len(batch), "admitted": len(admitted)})  # fmt: skip
        for seq, token in zip(batch, tokens, strict=True):
            self._advance(seq, token)

    def _run_inflight(self) -> None:
        active: list[Sequence] = []
        while self._wait_for_work(bool(active)):
            try:
                admitted = self._admit(self.engine.max_batch_size)
                if self.engine.packed:
                    running, active = active, active + admitted  # all of them fail together if the step does
                    if active:
                        self._fused_step(running, admitted)
                else:  # padded engines: the prompts in a call of their own, then the decode step
                    active += admitted  # all of them fail together if the prefill does
                    self._prefill(admitted)
                    active = self._retire_finished(active)
                    if active:
                        self._decode(active, active)
                active = self._retire_finished(active)
            except Exception as exc:  # one bad step must not kill the loop for every later request
                self._fail_all(active, exc)
                active = []
        self._fail_all(active, RuntimeError("the model is unloading"))  # stopped with sequences still running

    def _run_static(self) -> None:
        while self._wait_for_work(False):
            # Collect a batch like a dynamic batcher: until it is full or batch_wait_s has passed.
            deadline = time.monotonic() + self.batch_wait_s
            with self._cond:
                while len(self._queue) < self.engine.max_batch_size and not self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(timeout=left)
            batch = self._admit(self.engine.max_batch_size)
            try:
                self._prefill(batch)
                while any(not s.done for s in batch):
                    self._decode(batch, [s for s in batch if not s.done])
            except Exception as exc:
                self._fail_all(batch, exc)
                continue
            for seq in batch:
                self._release(seq)
