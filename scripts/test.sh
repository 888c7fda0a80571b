#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then lint + pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/system_deps.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
