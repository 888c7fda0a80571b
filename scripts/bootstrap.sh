#!/usr/bin/env bash
# Create .venv (once) and install the pinned requirements when they change.
# Debian's python3.11 is preferred: the Triton Python-backend stub links the system libpython.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${UFO_PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x /usr/bin/python3.11 ] && /usr/bin/python3.11 -c 'import venv, ensurepip' 2>/dev/null; then PY=/usr/bin/python3.11
  else PY=$(command -v python3.11 || command -v python3); fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing pinned requirements (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
