#!/usr/bin/env bash
# System packages the *test suite* needs beyond .venv (learners running `make lab` need only prometheus, for lab 4):
#   chromium   real-browser tests of JupyterLab through Playwright (never `playwright install`)
#   prometheus lab 4 and tritonlab.monitor: a real Prometheus server and promtool (Debian's package, 2.42);
#              tritonlab runs its own on 127.0.0.1 (where systemd runs, the package also enables a service on :9090)
#   docker.io  the docker backend's tests: a real dockerd (the tests start their own, data root in a temp dir)
#   debootstrap `tritonlab image build`: the Debian base of the CPU Triton image, made with no registry
# Installs with apt-get when running as root on Debian/Ubuntu; otherwise says what to install and carries on
# (the tests that need a missing package then skip, except under CI=true where they fail).
set -euo pipefail

want=()
command -v chromium >/dev/null 2>&1 || want+=(chromium)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || want+=(prometheus)
command -v dockerd >/dev/null 2>&1 || want+=(docker.io)
{ command -v debootstrap || [[ -x /usr/sbin/debootstrap ]]; } >/dev/null 2>&1 || want+=(debootstrap)

if [[ ${#want[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[system] not installed: ${want[*]} (tests that need them will skip). Install with: sudo apt-get install ${want[*]}"
  exit 0
fi
echo "[system] installing ${want[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
