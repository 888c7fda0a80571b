#!/usr/bin/env bash
# Debian packages the project uses: Fashion-MNIST (demo products) and redis-server (distributed store tests).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
want=()
[ -d /usr/share/datasets/fashion-mnist ] || want+=(dataset-fashion-mnist)
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
[ ${#want[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "[system_deps] installing ${want[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${want[@]}" >/dev/null
