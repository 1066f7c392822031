"""Ragged attention for the engine's CPU build: each sequence reads its own cached positions, not the batch's longest.

In-flight batching runs sequences of very different lengths together (a 200-token answer beside one just started).
Attention padded to the longest sequence pays for every other sequence's empty positions; TensorRT-LLM's attention
kernels read each sequence's own KV length instead. So does this one.

- ``tritonlab::ragged_attention`` is a torch custom op. Its Python implementation is the plain-torch reference
  (eager runs, tests); ``register_fake`` gives ``torch.export`` its shapes.
- ``ragged_attention.cpp`` beside this file is the kernel, written against torch's stable C API as the C shim that
  AOTInductor calls directly (``aot_inductor.custom_ops_to_c_shims``): the compiled step calls it like one of
  its own kernels, without torch's dispatcher or Python.
- :func:`build_kernel` compiles it for this CPU's vector ISA (the flags Inductor compiles the engine with) into
  the engine directory; the runtime loads it before the compiled step (``runtime.CpuStep``).

GPU builds keep the padded attention (Inductor generates its GPU kernels; this kernel is CPU code).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from tritonlab.engine import runtime

ATTENTION = ("ragged", "padded")  # the forms a build can have (network.EngineDecoder, build.build_engine)
KERNEL_SOURCE = Path(__file__).with_name("ragged_attention.cpp")
KERNEL_LIBRARY = runtime.KERNEL_LIBRARY  # in the engine directory
C_SHIM = (
    "AOTITorchError aoti_torch_cpu_ragged_attention(AtenTensorHandle q, AtenTensorHandle k, AtenTensorHandle v, "
    "AtenTensorHandle k_cache, AtenTensorHandle v_cache, AtenTensorHandle start_pos, AtenTensorHandle slots, "
    "AtenTensorHandle* ret0)"
)


@torch.library.custom_op("tritonlab::ragged_attention", mutates_args=())
def ragged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    start_pos: torch.Tensor,
    slots: torch.Tensor,
) -> torch.Tensor:
    """Attention of ``q`` [B, H, T, D] (float32) over each sequence's ``start_pos[b]`` cached keys/values in slot
    ``slots[b]`` of ``k_cache``/``v_cache`` [slots, KVH, S, D], followed by the step's new ``k``/``v`` [B, KVH, T, D]
    up to the query's own position. Returns [B, H, T, D] float32. (Reference: the compiled engine runs the kernel.)

    Packed rows (T = 1, the runtime's form): consecutive rows of one slot at consecutive positions are one
    sequence's new tokens (a prompt), and each also sees the new keys/values of the earlier rows of its slot."""
    batch, heads, steps, size = q.shape
    kv_heads = k.shape[1]
    out = torch.empty(batch, heads, steps, size, dtype=torch.float32, device=q.device)
    first = 0
    for b in range(batch):
        own, slot = int(start_pos[b]), int(slots[b])
        packed = steps == 1 and b > 0 and int(slots[b - 1]) == slot
        if packed and own != int(start_pos[b - 1]) + 1:
            raise ValueError("rows of one slot must be at consecutive positions")
        first = first if packed else b
        cached = int(start_pos[first])
        new_k = k[first : b + 1, :, 0].transpose(0, 1) if steps == 1 else k[b]  # [KVH, new keys, D]
        new_v = v[first : b + 1, :, 0].transpose(0, 1) if steps == 1 else v[b]
        keys = torch.cat((k_cache[slot, :, :cached], new_k), dim=1).float()  # [KVH, own + T, D]
        values = torch.cat((v_cache[slot, :, :cached], new_v), dim=1).float()
        keys = keys.repeat_interleave(heads // kv_heads, dim=0)
        values = values.repeat_interleave(heads // kv_heads, dim=0)
        scores = q[b].float() @ keys.transpose(-1, -2) * size**-0.5  # [H, T, own + T]
        visible = torch.arange(own + steps)[None, :] <= own + torch.arange(steps)[:, None]
        out[b] = scores.masked_fill(~visible, float("-inf")).softmax(-1) @ values
    return out


@ragged_attention.register_fake
def _fake(q, k, v, k_cache, v_cache, start_pos, slots):  # export's shapes: the output is shaped like q, float32
    return q.new_empty(q.shape, dtype=torch.float32)


def c_shims() -> dict[torch._ops.OpOverload, list[str]]:
    """``aot_inductor.custom_ops_to_c_shims`` for a build that uses the op."""
    return {torch.ops.tritonlab.ragged_attention.default: [C_SHIM]}


def kernel_flags() -> list[str]:
    """The kernel's compile flags: this CPU's vector ISA as Inductor compiles the engine for it.

    -ffast-math lets the compiler vectorize exp (glibc's libmvec) and the dot products. It is given to the compile
    step only: a shared library *linked* with -ffast-math (GCC < 13) carries crtfastmath.o, which switches the whole
    process to flush-to-zero floating point when it loads."""
    from torch._inductor import cpu_vec_isa

    isa = cpu_vec_isa.pick_vec_isa().build_arch_flags().split()
    return ["-O3", "-ffast-math", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-fopenmp", *isa]


def build_kernel(dest: Path) -> Path:
    """Compile the kernel into ``dest / KERNEL_LIBRARY`` for this CPU (Inductor's compiler and vector ISA flags)."""
    from torch._inductor import cpp_builder
    from torch.utils import cpp_extension

    from tritonlab.errors import TritonLabError

    compiler, obj = cpp_builder.get_cpp_compiler(), dest / "ragged_attention.o"
    compile_command = [
        compiler, *kernel_flags(), *(f"-I{path}" for path in cpp_extension.include_paths()),
        "-c", str(KERNEL_SOURCE), "-o", str(obj),
    ]  # fmt: skip
    link_command = [
        compiler, "-shared", "-fopenmp", "-Wl,--exclude-libs,ALL", str(obj), "-o", str(dest / KERNEL_LIBRARY),
        *(f"-L{path}" for path in cpp_extension.library_paths()), "-ltorch_cpu", "-lc10",
    ]  # fmt: skip
    for command in (compile_command, link_command):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise TritonLabError(
                f"compiling the attention kernel {KERNEL_SOURCE.name} failed:\n{done.stderr[-2000:]}",
                fix="the engine build needs the C++ compiler AOTInductor uses (g++): install it (make system)",
            )
    obj.unlink()
    return dest / KERNEL_LIBRARY
