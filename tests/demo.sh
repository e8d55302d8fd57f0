#!/usr/bin/env bash
# README's run command: the daemon end to end on a machine with no sound card and no API key.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(build-essential pkg-config libclang-dev libasound2-dev libopus-dev libwebrtc-audio-processing-dev)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq || true
    timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo build --quiet --bins
echo "== realtime-voiced with the demo configuration (Ctrl-C to stop; stops by itself after 10 s)"
./target/debug/realtime-voiced --config config/dev/demo.toml --start &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
sleep 10
kill -TERM $pid
wait $pid
trap - EXIT
