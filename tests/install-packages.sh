#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet.
# Used by README's two commands; as root (or says what to run).
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A foreign architecture's broken index (see packaging/build-deb.sh) must not stop us.
timeout 600 apt-get update -qq || echo "warning: apt-get update reported errors; continuing" >&2
timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}"
