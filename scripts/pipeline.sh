#!/usr/bin/env bash
# Reproduce the science and the demo models: demo data -> train the UFO supernet and the single-task
# baselines -> search and trim one subnet per task -> report (docs/results.md) -> export the Triton repository.
# Stages already done are skipped. Writes the repository to model_store/repository (pass another with REPO=...).
# SEEDS="0 1" (default "0"): one run per seed; the first is reported and exported, the others are set beside it
# in the report (the spread over seeds). Each run takes about 20-25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system_deps.sh
bash scripts/bootstrap.sh
read -r -a seeds <<< "${SEEDS:-0}"
compare=()
for seed in "${seeds[@]:1}"; do
  .venv/bin/ufo pipeline --preset demo --data data/demo --out "runs/demo-seed$seed" --docs "runs/demo-seed$seed/docs" \
    --seed "$seed" "$@"
  compare+=("runs/demo-seed$seed")
done
.venv/bin/ufo pipeline --preset demo --data data/demo --out runs/demo --docs docs --seed "${seeds[0]}" \
  ${compare[@]+--compare "${compare[@]}"} "$@"
.venv/bin/ufo export --run runs/demo --repository "${REPO:-model_store/repository}" --data data/demo --kind auto
.venv/bin/ufo store verify --repository "${REPO:-model_store/repository}"
