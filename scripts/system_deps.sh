#!/usr/bin/env bash
# Debian packages the project uses: Fashion-MNIST (demo products), redis-server (distributed store tests),
# docker-compose (1.29.2: `docker-compose config` validates docker-compose.yml without a Docker engine) and
# chromium with one font (the visual search page's browser tests drive it headless through Playwright).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
want=()
[ -d /usr/share/datasets/fashion-mnist ] || want+=(dataset-fashion-mnist)
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
lean=()  # installed without their Recommends (docker-compose would pull in a whole Docker engine)
command -v docker-compose >/dev/null 2>&1 || lean+=(docker-compose)
[ -x /usr/bin/chromium ] || lean+=(chromium)  # headless only: no desktop integration, no GL drivers
[ -d /usr/share/fonts/truetype/dejavu ] || lean+=(fonts-dejavu-core)
[ ${#want[@]} -eq 0 ] && [ ${#lean[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "[system_deps] installing ${want[*]} ${lean[*]}" >&2
$SUDO apt-get update -qq
[ ${#want[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${want[@]}" >/dev/null
[ ${#lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
