#!/usr/bin/env bash
# Lab 5, Track B on the H200, in one device `run` call (carry .whl/, see README.md beside this file):
#   1. install the carried wheels into the machine's python3 and put this checkout's src/ on its path;
#   2. bench/llm_batching.py --device cuda: cold CUDA engine build (empty engine, Inductor and Triton caches), cache
#      hit, the GPU engine refused on the CPU, then in-flight vs static batching at concurrency 16 with output
#      lengths 16..256 (TTFT, ITL p50/p99) -> bench/results/h200_llm_batching.json; the same loop with the engine
#      in a plain process, no Triton (--engine-only);
#   3. tests/engine/test_engine_gpu.py: CUDA build/config/cache key, tokens equal transformers on the GPU, refusals,
#      Triton serving the engine from a KIND_GPU instance.
# Everything it writes is copied to $OUT when the device tool sets it.
#
#   run(command="bash bench/device/h200_llm.sh", carry=[".whl"], kind="nvidia-h200")
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/.work/h200_llm}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
python3 -m pip uninstall -y -q scikit-learn scipy  # built for numpy 2: transformers would import them and fail
SP=$(python3 -c 'import site; print(site.getsitepackages()[0])')
echo "$PWD/src" > "$SP/tritonlab-dev.pth"

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import sys, torch, numpy, tokenizers, safetensors, transformers, tritonclient
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "cc", torch.cuda.get_device_capability(0), "numpy", numpy.__version__, "tokenizers", tokenizers.__version__,
      "safetensors", safetensors.__version__, "transformers", transformers.__version__)'
} 2>&1 | tee "$OUT/machine.txt"

status=0
timeout 360 python3 bench/llm_batching.py --device cuda --dtype float16 --requests 48 --engine-only \
  --out bench/results/h200_llm_batching.json 2>&1 | tee "$OUT/bench.log" || status=1
cp bench/results/h200_llm_batching.json "$OUT/" 2>/dev/null

timeout 170 python3 -m pytest -q -p no:cacheprovider tests/engine/test_engine_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log" \
  || status=1
exit $status
