#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then lint + pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if ! command -v redis-server >/dev/null 2>&1; then
  echo "[test] installing redis-server (Debian package)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
    || echo "[test] could not install redis-server; Redis tests will fail" >&2
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
