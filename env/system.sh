#!/usr/bin/env bash
# System packages the *test suite* needs beyond .venv (learners running `make lab` need none of these):
#   chromium   real-browser tests of JupyterLab through Playwright (never `playwright install`)
# Installs with apt-get when running as root on Debian/Ubuntu; otherwise says what to install and carries on
# (the tests that need a missing package then skip, except under CI=true where they fail).
set -euo pipefail

want=()
command -v chromium >/dev/null 2>&1 || want+=(chromium)

if [[ ${#want[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[system] not installed: ${want[*]} (browser tests will skip). Install with: sudo apt-get install ${want[*]}"
  exit 0
fi
echo "[system] installing ${want[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
