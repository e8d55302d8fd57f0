#!/usr/bin/env bash
# README's test command: installs the system packages the build and the tests need (Debian 12),
# then runs formatting, lints and every test. Safe to run again; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Libraries the crates link, and the real programs the tests drive (alsa-lib plugins, a D-Bus
# daemon, systemd's analyzers, PulseAudio for paced audio, coturn for TURN, espeak-ng and sox
# for speech, Python for the aiortc peer and, with python3-gi, the example tool provider).
PACKAGES=(
    build-essential pkg-config libclang-dev
    libasound2-dev libopus-dev libwebrtc-audio-processing-dev
    alsa-utils libasound2-plugins pulseaudio pulseaudio-utils
    dbus dbus-bin libglib2.0-bin systemd util-linux passwd procps
    sox espeak-ng coturn python3 python3-venv python3-pip python3-gi file ca-certificates
)

# On arm64 the echo canceller is built from the source its crate bundles (Cargo.toml).
if [ "$(dpkg --print-architecture)" = arm64 ]; then
    PACKAGES+=(autoconf automake libtool)
fi
bash tests/install-packages.sh "${PACKAGES[@]}"

export CARGO_TERM_COLOR=never
timeout 300 cargo fmt --all -- --check
timeout 1800 cargo clippy --workspace --all-targets --locked -- -D warnings
# The whole workspace: the simulator's own tests are what builds its binary for the rest. The
# end-to-end conversations run on their own with their output shown: each prints how many of
# the daemon's client events were checked against OpenAI's published schema.
timeout 2400 cargo test --workspace --locked -- --skip conversation_e2e
timeout 900 cargo test --locked --test it conversation_e2e -- --show-output
