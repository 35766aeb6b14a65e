#!/usr/bin/env bash
# Installs what the service and its tests need on a fresh Debian machine, and nothing that is already
# there: Debian's prometheus (with promtool), prometheus-alertmanager and wrk, then uv and the locked
# Python environment. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_system=${1:-all}   # "all" (tests and benchmarks) or "none" (just the Python environment)

if [[ $want_system == all ]]; then
  missing=()
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v wrk >/dev/null || missing+=(wrk)
  if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if ! command -v uv >/dev/null; then
  echo "bootstrap: installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --locked --quiet
