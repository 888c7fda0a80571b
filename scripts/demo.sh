#!/usr/bin/env bash
# The main job: build the offline demo data, train the UFO supernet and the single-task baselines, search and
# trim one subnet per task, and write the comparison report (docs/results.md). Stages already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system_deps.sh
bash scripts/bootstrap.sh
.venv/bin/ufo pipeline --preset demo --data data/demo --out runs/demo --docs docs "$@"
