#!/usr/bin/env bash
# README's test command: installs the system packages the build and the tests need (Debian 12),
# then runs formatting, lints and every test. Safe to run again; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Libraries the crates link, and the real programs the tests drive (alsa-lib plugins, a D-Bus
# daemon, systemd's analyzers, PulseAudio for paced audio, coturn for TURN, espeak-ng and sox
# for speech, Python for the aiortc peer).
PACKAGES=(
    build-essential pkg-config libclang-dev
    libasound2-dev libopus-dev libwebrtc-audio-processing-dev
    alsa-utils libasound2-plugins pulseaudio pulseaudio-utils
    dbus dbus-bin libglib2.0-bin systemd util-linux passwd procps
    sox espeak-ng coturn python3 python3-venv python3-pip file ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # A foreign architecture's broken index (see packaging/build-deb.sh) must not stop the tests.
    timeout 600 apt-get update -qq || echo "warning: apt-get update reported errors; continuing" >&2
    timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

export CARGO_TERM_COLOR=never
timeout 300 cargo fmt --all -- --check
timeout 1800 cargo clippy --all-targets --locked -- -D warnings
timeout 2400 cargo test --locked
