#!/usr/bin/env bash
# Create .venv and install everything tritonlab needs, pinned by env/versions.toml.
# Idempotent: when nothing that decides the environment has changed, a second run only checks and exits.
# Environment knobs:
#   PYTHON=python3.12            interpreter to build the venv from (3.11 or 3.12)
#   TRITONLAB_TORCH_INDEX=URL    extra index for torch (e.g. https://download.pytorch.org/whl/cpu on a laptop)
#   TRITONLAB_SETUP_FORCE=1      reinstall even if the stamp matches
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.tritonlab-setup"

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH. Install Python 3.11 or 3.12, or run PYTHON=/path/to/python3 $0"
"$PYTHON" - <<'PY' || die "tritonlab needs Python 3.11 or 3.12 (found $("$PYTHON" --version 2>&1)). Run PYTHON=python3.11 $0"
import sys
sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)
PY

# Everything that decides what gets installed; the stamp records its hash.
fingerprint() {
  {
    "$PYTHON" -c 'import sys; print(sys.version)'
    cat env/versions.toml env/constraints.txt env/setup.sh pyproject.toml 2>/dev/null
    echo "${TRITONLAB_TORCH_INDEX:-}"
  } | sha256sum | cut -d' ' -f1
}
WANT="$(fingerprint)"

if [[ -z "${TRITONLAB_SETUP_FORCE:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
   && "$VENV/bin/python" -c 'import tritonlab' 2>/dev/null; then
  say "environment up to date ($VENV)"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

REQS="$(mktemp)"; trap 'rm -f "$REQS"' EXIT
"$PYTHON" env/pins.py packages dev >"$REQS"
CONSTRAINTS=()
[[ -f env/constraints.txt ]] && CONSTRAINTS=(-c env/constraints.txt)
TORCH_INDEX=()
[[ -n "${TRITONLAB_TORCH_INDEX:-}" ]] && TORCH_INDEX=(--extra-index-url "$TRITONLAB_TORCH_INDEX")

say "installing pinned packages (first run: a few minutes)"
"${PIP[@]}" install --upgrade --quiet "pip>=24" wheel
"${PIP[@]}" install --quiet "${TORCH_INDEX[@]}" "${CONSTRAINTS[@]}" -r "$REQS"
"${PIP[@]}" install --quiet --no-deps -e .

say "staging the embedded Triton server, linking perf_analyzer"
"$VENV/bin/python" -m tritonlab.envsetup

echo "$WANT" >"$STAMP"
say "done: $("$VENV/bin/python" -c 'import tritonlab; print("tritonlab", tritonlab.__version__)') in $VENV"
