#!/usr/bin/env bash
# One GPU run: install what the GPU paths need, run the `gpu` tests, measure, and leave one report file.
#   bash bench/gpu.sh [--out FILE] [--wheels DIR] [--triton-url HOST:8001] [--step-timeout S] [--dry-run]
# --wheels DIR   install from wheels brought along (pip --no-index --find-links DIR); default: the registries
# --triton-url   a GPU tritonserver (NVIDIA's image, docker/triton.Dockerfile) serving demo/models converted by
#                `python -m model_store.gpu_config` plus a ufo_face_nobatch copy without dynamic batching
# --dry-run      on any machine: check every step's commands, modules and arguments, install nothing, and write
#                the report with "not measured" rows (CI runs this: tests/deploy/test_gpu_script.py)
# Every step runs under `timeout` (default 150 s) so the whole script stays within 10 minutes; a step that
# fails or times out is recorded in the report and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=bench/gpu_report.md
WHEELS=""
TRITON_URL=""
STEP_TIMEOUT=150
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --triton-url) TRITON_URL="$2"; shift 2 ;;
    --step-timeout) STEP_TIMEOUT="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) echo "bench/gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-.venv/bin/python}"
VENV_GPU=.venv-gpu
DRY=()
[ "$DRY_RUN" = 1 ] && DRY=(--dry-run)
for tool in timeout "$PY"; do
  command -v "$tool" >/dev/null || { echo "bench/gpu.sh: $tool not found" >&2; exit 2; }
done

mkdir -p "$(dirname "$OUT")"
card="$( (command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader) | head -1)"
{
  echo "# GPU run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "card: ${card:-none visible}; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([ "$DRY_RUN" = 1 ] && echo '; DRY RUN: nothing measured')"
  echo
  echo "| what | value | unit | note |"
  echo "|---|---|---|---|"
} > "$OUT"

step() {  # step NAME COMMAND...: run under the global per-step timeout, log, note failures in the report
  local name="$1"; shift
  echo "== $name"
  timeout "$STEP_TIMEOUT" "$@" > "/tmp/gpu-step-$name.log" 2>&1
  local rc=$?
  cat "/tmp/gpu-step-$name.log"
  if [ $rc -ne 0 ]; then
    echo "| step $name | failed (exit $rc$([ $rc = 124 ] && echo ', timed out')) | | see its log |" >> "$OUT"
  fi
  return $rc
}

rows() {  # rows NAME ARGS...: a bench/gpu_bench.py measurement, its JSON rows appended as table lines
  local name="$1"; shift
  step "$name" "$PY" bench/gpu_bench.py "${DRY[@]}" "$@" &&
    "$PY" - "/tmp/gpu-step-$name.log" >> "$OUT" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith('{"what"'):
        for r in json.loads(line)["rows"]:
            print(f"| {r['what']} | {r['value']} | {r['unit']} | {r['note']} |")
PYEOF
}

install() {  # a GPU venv beside .venv: CUDA torch, faiss-gpu-cu12 + NumPy 2 (docker/requirements-gpu.txt)
  local source=()
  [ -n "$WHEELS" ] && source=(--no-index --find-links "$WHEELS")
  if [ "$DRY_RUN" = 1 ]; then
    test -f docker/requirements-gpu.txt && test -f requirements.txt && echo "would create $VENV_GPU from ${WHEELS:-the registries}"
    return
  fi
  python3 -m venv "$VENV_GPU" || return 1
  grep -vE '^(faiss-cpu|numpy|nvidia-pytriton)==' requirements.txt > /tmp/gpu-requirements.txt
  grep -E '^[a-z]' docker/requirements-gpu.txt >> /tmp/gpu-requirements.txt
  timeout "$STEP_TIMEOUT" "$VENV_GPU/bin/pip" install -q "${source[@]}" -r /tmp/gpu-requirements.txt onnxruntime-gpu &&
    timeout "$STEP_TIMEOUT" "$VENV_GPU/bin/pip" install -q --no-deps -e . && PY="$VENV_GPU/bin/python"
}

echo "== install"  # a shell function (it sets PY): each of its commands carries the timeout itself
if ! install; then
  echo "| step install | failed | | measuring with $PY |" >> "$OUT"
fi
if [ "$DRY_RUN" = 1 ]; then
  step gpu-tests "$PY" -m pytest -q --collect-only -m gpu tests/gpu
else
  step gpu-tests env TRITON_GPU_URL="$TRITON_URL" "$PY" -m pytest -q -rs -m gpu tests/gpu
fi
grep -E "passed|failed|skipped|selected|collected" "/tmp/gpu-step-gpu-tests.log" | tail -1 |
  sed 's/^/| gpu tests | /; s/$/ | | pytest -m gpu tests\/gpu |/' >> "$OUT"
rows faiss faiss
rows train train --presets demo small
rows triton triton ${TRITON_URL:+--url "$TRITON_URL"}
echo "report: $OUT"
