#!/usr/bin/env bash
# The whole test suite: sets up what the tests need (scripts/bootstrap.sh), then lint, the import contracts and pytest.
# The tests run offline: the venv's bin/ (kubectl) comes first on PATH, and pip may not reach an index.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" PIP_NO_INDEX=1
.venv/bin/ruff check .
.venv/bin/lint-imports  # the layering contracts in pyproject.toml (docs/ARCHITECTURE.md)
exec .venv/bin/python -m pytest "$@"
