#!/usr/bin/env bash
# The main job: verify the committed demo models, build the offline demo data, start the retrieval service,
# enroll the demo gallery and print curl examples. Ctrl-C stops it. (scripts/pipeline.sh retrains the models.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh  # Debian packages first, then .venv
.venv/bin/ufo store verify --repository demo/models
[ -f data/demo/manifest.json ] || .venv/bin/ufo data demo --out data/demo
exec .venv/bin/ufo demo --repository demo/models --data data/demo "$@"
