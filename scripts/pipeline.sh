#!/usr/bin/env bash
# Reproduce the science and the demo models: demo data -> train the UFO supernet and the single-task
# baselines -> search and trim one subnet per task -> report (docs/results.md) -> export the Triton repository.
# Stages already done are skipped. Writes the repository to model_store/repository (pass another with REPO=...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system_deps.sh
bash scripts/bootstrap.sh
.venv/bin/ufo pipeline --preset demo --data data/demo --out runs/demo --docs docs "$@"
.venv/bin/ufo export --run runs/demo --repository "${REPO:-model_store/repository}" --data data/demo --kind auto
.venv/bin/ufo store verify --repository "${REPO:-model_store/repository}"
