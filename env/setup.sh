#!/usr/bin/env bash
# Create .venv and install everything tritonlab needs, pinned by env/versions.toml.
# Idempotent: when nothing that decides the environment has changed, a second run only checks and exits.
# Environment knobs:
#   PYTHON=python3.12            interpreter to build the venv from (3.11 or 3.12)
#   TRITONLAB_TORCH_INDEX=URL    extra index for torch (e.g. https://download.pytorch.org/whl/cpu on a laptop)
#   TRITONLAB_SETUP_FORCE=1      reinstall even if the stamp matches
#   TRITONLAB_NO_UV=1            install with pip only (by default a pinned uv, fetched as a wheel, does the install;
#                                without it, or if it cannot be fetched, pip does, the slow way)
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

UV_VERSION="0.13.9"  # the installer, not part of the environment: it lives in $VENV/.setup, outside site-packages

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv --without-pip "$VENV"  # pip comes with the pinned packages (uv) or from ensurepip (pip path)
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

REQS="$(mktemp)"; trap 'rm -f "$REQS"' EXIT
"$PYTHON" env/pins.py packages dev >"$REQS"
CONSTRAINTS=()
[[ -f env/constraints.txt ]] && CONSTRAINTS=(-c env/constraints.txt)
TORCH_INDEX=()
[[ -n "${TRITONLAB_TORCH_INDEX:-}" ]] && TORCH_INDEX=(--extra-index-url "$TRITONLAB_TORCH_INDEX")

# A pip that can run: the venv's (once installed), else the interpreter's. Sets BOOT_PIP; fails if there is none.
find_pip() {
  local py
  for py in "$VENV/bin/python" "$PYTHON"; do
    if "$py" -m pip --version >/dev/null 2>&1; then BOOT_PIP=("$py" -m pip --disable-pip-version-check); return 0; fi
  done
  return 1
}

# uv==$UV_VERSION in $VENV/.setup (fetched once with pip, from the same indexes pip uses). Sets UV; fails quietly.
find_uv() {
  [[ -z "${TRITONLAB_NO_UV:-}" ]] || return 1
  local dir="$VENV/.setup/uv-$UV_VERSION"
  if ! "$dir/bin/uv" --version >/dev/null 2>&1; then
    # no pip anywhere (e.g. a distro python3 without python3-pip): put one in the venv to fetch uv with
    find_pip || { "$VENV/bin/python" -m ensurepip --default-pip >/dev/null 2>&1 && find_pip; } || return 1
    rm -rf "$dir"; mkdir -p "$VENV/.setup"
    "${BOOT_PIP[@]}" install --quiet --no-deps --no-compile --retries 1 --timeout 30 --target "$dir" \
      "uv==$UV_VERSION" >"$VENV/.setup/uv-install.log" 2>&1 || return 1
    "$dir/bin/uv" --version >/dev/null 2>&1 || return 1
  fi
  UV="$dir/bin/uv"
}

# pip's index settings (pip.conf files and PIP_* variables, as `pip config list` merges them) as uv options,
# so uv installs from exactly where pip would: a local mirror here, PyPI on a machine with no pip config.
UV_ARGS=()
uv_config_from_pip() {
  find_pip || return 0
  local kind value name
  while IFS=$'\t' read -r kind value; do
    case "$kind" in
      arg) UV_ARGS+=("$value") ;;
      env) name="${value%%=*}"; [[ -n "${!name:-}" ]] || export "${value?}" ;;  # the caller's own setting wins
    esac
  done < <("${BOOT_PIP[@]}" config list 2>/dev/null | "$PYTHON" -c '
import ast, sys
seen = {}
for line in sys.stdin:
    key, eq, value = line.rstrip("\n").partition("=")
    section, dot, name = key.partition(".")
    if eq and dot:
        try:
            seen.setdefault(name, {})[section] = str(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            pass
def get(name):  # pip: a PIP_* variable beats [install] beats [global]
    for section in (":env:", "install", "global"):
        if section in seen.get(name, {}):
            return seen[name][section]
    return ""
def arg(*words):
    for word in words:
        print("arg\t" + word)
if get("index-url"):
    arg("--index-url", get("index-url"))
for url in get("extra-index-url").split():
    arg("--extra-index-url", url)
for place in get("find-links").split():
    arg("--find-links", place)
for host in get("trusted-host").split():
    arg("--allow-insecure-host", host)
if get("no-index").lower() in ("1", "true", "yes", "on"):
    arg("--no-index")
if get("cert"):
    print("env\tSSL_CERT_FILE=" + get("cert"))
if get("proxy"):
    print("env\tHTTPS_PROXY=" + get("proxy"))
if get("timeout") or get("default-timeout"):
    print("env\tUV_HTTP_TIMEOUT=" + (get("timeout") or get("default-timeout")))
')
}

install_with_pip() {
  if ! "${PIP[@]}" --version >/dev/null 2>&1; then
    "$VENV/bin/python" -m ensurepip --upgrade --default-pip >/dev/null \
      || die "could not put pip into $VENV (ensurepip failed). On Debian/Ubuntu: apt install python3-venv"
  fi
  "${PIP[@]}" install --upgrade --quiet "pip>=24" wheel
  "${PIP[@]}" install --quiet "${TORCH_INDEX[@]}" "${CONSTRAINTS[@]}" -r "$REQS"
  "${PIP[@]}" install --quiet --no-deps -e .
}

say "installing pinned packages (first run: a few minutes)"
if find_uv; then
  uv_config_from_pip
  # --index-strategy unsafe-best-match: the best version across all indexes, as pip does. uv's default only
  # looks at the first index that has a package at all, and fails when a mirror lacks the pinned version.
  # --link-mode copy: envsetup patchelfs bin/perf_analyzer in place; a hard link would patch uv's cache too.
  UV_PIP=("$UV" pip install --quiet --python "$VENV/bin/python" --index-strategy unsafe-best-match
          --link-mode copy "${UV_ARGS[@]}")
  if "${UV_PIP[@]}" --compile-bytecode "${TORCH_INDEX[@]}" "${CONSTRAINTS[@]}" -r "$REQS" "pip>=24" wheel \
     && "${UV_PIP[@]}" --no-deps -e .; then
    :
  else
    say "uv could not install the pinned packages (above); trying again with pip"
    install_with_pip
  fi
else
  if [[ -n "${TRITONLAB_NO_UV:-}" ]]; then
    say "installing with pip (TRITONLAB_NO_UV is set)"
  else
    say "installing with pip: could not fetch uv==$UV_VERSION (why: $VENV/.setup/uv-install.log)"
  fi
  install_with_pip
fi

say "staging the embedded Triton server, linking perf_analyzer"
"$VENV/bin/python" -m tritonlab.envsetup

echo "$WANT" >"$STAMP"
say "done: $("$VENV/bin/python" -c 'import tritonlab; print("tritonlab", tritonlab.__version__)') in $VENV"
