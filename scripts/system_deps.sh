#!/usr/bin/env bash
# Debian packages the project uses, installed only when missing (needs root, or sudo, the first time):
# - python3.11-venv (`python3.11 -m venv` and ensurepip; scripts/bootstrap.sh runs this before making .venv)
#   and libpython3.11 (the shared libpython3.11.so.1.0 that the Triton Python-backend stub links);
# - dataset-fashion-mnist (demo products), redis-server (distributed store tests), docker-compose (1.29.2:
#   `docker-compose config` validates docker-compose.yml without a Docker engine) and chromium with one font
#   (the visual search page's browser tests drive it headless through Playwright).
# `--print` lists what would be installed and installs nothing. The probes can be pointed elsewhere (tests):
# UFO_SYSTEM_PYTHON (default /usr/bin/python3.11), UFO_LDCONFIG (default ldconfig).
set -euo pipefail
PY=${UFO_SYSTEM_PYTHON:-/usr/bin/python3.11}
LDCONFIG=${UFO_LDCONFIG:-ldconfig}
want=()
if [ ! -x "$PY" ]; then want+=(python3.11 python3.11-venv)
elif ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then want+=(python3.11-venv); fi
# the cache is read whole before grep: `ldconfig -p | grep -q` under pipefail fails whenever grep exits early
# and ldconfig dies of SIGPIPE, which reported an installed libpython as missing
libs=$("$LDCONFIG" -p 2>/dev/null || true)
grep -q 'libpython3\.11\.so\.1\.0' <<<"$libs" || want+=(libpython3.11)
[ -d /usr/share/datasets/fashion-mnist ] || want+=(dataset-fashion-mnist)
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
lean=()  # installed without their Recommends (docker-compose would pull in a whole Docker engine)
command -v docker-compose >/dev/null 2>&1 || lean+=(docker-compose)
[ -x /usr/bin/chromium ] || lean+=(chromium)  # headless only: no desktop integration, no GL drivers
[ -d /usr/share/fonts/truetype/dejavu ] || lean+=(fonts-dejavu-core)
if [ "${1:-}" = --print ]; then
  echo "${want[*]} ${lean[*]}" | xargs -r printf '%s\n'
  exit 0
fi
[ ${#want[@]} -eq 0 ] && [ ${#lean[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "[system_deps] installing ${want[*]} ${lean[*]}" >&2
$SUDO apt-get update -qq
[ ${#want[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${want[@]}" >/dev/null
[ ${#lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
# a shared library installed just now must be found by the stub's loader
[ ${#want[@]} -eq 0 ] || $SUDO "$LDCONFIG" 2>/dev/null || true
