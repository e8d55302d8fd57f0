#!/bin/bash
# The echo canceller on arm64: instructions per 10 ms block with Debian's arm64
# libwebrtc-audio-processing (built without NEON) and with the bundled source the arm64 package
# links (NEON). Cross-builds this program twice with Debian's Rust toolchain and counts the
# instructions it executes under qemu-aarch64-static, one translation block per instruction
# (-singlestep -d exec,nochain), for 20 and for 70 blocks: the difference over 50 blocks leaves
# out start-up. Also prints the wall time of 1000 blocks under qemu, which is an emulator's,
# not a Pi's. Needs what `packaging/build-deb.sh arm64` installs, plus
# libwebrtc-audio-processing-dev:arm64 and qemu-user-static.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TRIPLE=aarch64-unknown-linux-gnu
export RUSTC=/usr/bin/rustc
# shellcheck source=packaging/cross-env.sh
. "$ROOT/packaging/cross-env.sh"
cross_env "$TRIPLE" aarch64-linux-gnu

count() { # binary blocks -> instructions executed
    timeout 900 qemu-aarch64-static -singlestep -d exec,nochain "$1" "$2" 2>&1 >/dev/null |
        grep -c '^Trace'
}

printf '%-34s %14s %14s %s\n' library "insns/block" "NEON symbols" "qemu wall time, 1000 blocks"
for variant in debian bundled; do
    dir=$ROOT/target/canceller-arm64/$variant
    features=()
    [ "$variant" = bundled ] && features=(--features bundled)
    (cd "$HERE" && timeout 1800 /usr/bin/cargo build -q --release --target "$TRIPLE" \
        --target-dir "$dir" "${features[@]}")
    bin=$dir/$TRIPLE/release/canceller-arm64
    few=$(count "$bin" 20)
    many=$(count "$bin" 70)
    # Where the canceller's code is: the shared library, or the program itself.
    if [ "$variant" = bundled ]; then
        label="bundled source (0.3.1), static"
        neon=$(nm "$bin" | grep -ci neon || true)
    else
        label="Debian's arm64 library (0.3)"
        neon=$(nm -D /usr/lib/aarch64-linux-gnu/libwebrtc_audio_processing.so.1 | grep -ci neon || true)
    fi
    wall=$(timeout 900 qemu-aarch64-static "$bin" 1000)
    printf '%-34s %14d %14s %s\n' "$label" $(((many - few) / 50)) "$neon" "$wall"
done
