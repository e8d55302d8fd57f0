#!/bin/bash
# Builds the realtime-voiced Debian package for one architecture into target/debian/.
#
#   packaging/build-deb.sh amd64|arm64|armhf
#
# ALSO_BUILD_SIM=1 also builds the simulator, realtime-sim, for that architecture (not packaged).
# PROFILE=release builds with the release profile instead of `dist` (what packages ship: sized for
# the Pi with whole-program LTO, about ten minutes longer to link on 2 cores; see Cargo.toml).
#
# Runs on a plain Debian 12 (bookworm) machine, no containers: it installs what it needs with
# apt-get (through sudo when not root). Cross builds use Debian's own Rust toolchain
# (rustc-web/cargo-web from bookworm-security, /usr/bin/rustc) because it ships the standard library
# for other architectures; a rustup toolchain in PATH is left alone and stays the default. Native
# builds use whatever cargo is in PATH, or Debian's when there is none.
set -euo pipefail

usage() {
    echo "usage: $0 amd64|arm64|armhf" >&2
    exit 2
}

[ $# -eq 1 ] || usage
ARCH=$1
case "$ARCH" in
    amd64) TRIPLE=x86_64-unknown-linux-gnu GNU=x86_64-linux-gnu ;;
    arm64) TRIPLE=aarch64-unknown-linux-gnu GNU=aarch64-linux-gnu ;;
    # ARMv7 + VFPv3: Pi 2/3/4 on 32-bit Raspberry Pi OS. Not ARMv6 (Pi 1, Zero, Zero W).
    armhf) TRIPLE=armv7-unknown-linux-gnueabihf GNU=arm-linux-gnueabihf ;;
    *) usage ;;
esac

PROFILE=${PROFILE:-dist}
case "$PROFILE" in dist | release) ;; *) echo "PROFILE must be dist or release" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT_DIR=$ROOT/target/debian
HOST_ARCH=$(dpkg --print-architecture)
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
export PATH="$HOME/.cargo/bin:$PATH"
START=$SECONDS

step() { printf '==> %s (%ds)\n' "$*" $((SECONDS - START)); }

# apt only looks at the host and target architectures: another foreign architecture whose index is
# broken (armhf in bookworm-security has been seen half-synced) would otherwise make apt discard
# the whole repository's fresh indexes, the target's among them.
APT_ARCHS=$HOST_ARCH
[ "$ARCH" = "$HOST_ARCH" ] || APT_ARCHS="$HOST_ARCH,$ARCH"
apt_get() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        -o APT::Architectures="$APT_ARCHS" "$@"
}
apt_update() {
    # Host indexes first: if the target's index fails, apt keeps the previous (good) host ones.
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 -o APT::Architectures="$HOST_ARCH" update -qq ||
        echo "warning: apt-get update failed (exit $?); using the indexes already there" >&2
    if [ "$ARCH" != "$HOST_ARCH" ]; then
        apt_get update -qq ||
            echo "warning: apt-get update for $ARCH failed (exit $?); using the indexes already there" >&2
    fi
}
apt_install() {
    apt_get install -y -qq --no-install-recommends "$@" >/dev/null
}
# Installed and at the wanted version? Saves a slow apt run when nothing is missing.
have_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || return 1
    done
}
ensure_pkgs() {
    have_pkgs "$@" && return 0
    step "installing: $*"
    [ -n "${APT_UPDATED:-}" ] || { apt_update; APT_UPDATED=1; }
    apt_install "$@"
}

COMMON_PKGS=(pkg-config dpkg-dev file libclang-dev)
# arm64 builds WebRTC's audio processing from the crate's bundled source, with its NEON code
# (Debian's arm64 library has none; see Cargo.toml): autotools instead of the library.
if [ "$ARCH" = arm64 ]; then
    CANCELLER_PKGS=(autoconf automake libtool)
    # Its C++ is linked in, so the binary itself needs libstdc++. cargo-deb takes the dependency's
    # version from the target's own package; on a machine without it, Depends got a bare
    # "libstdc++6:arm64" and no version.
    [ "$ARCH" = "$HOST_ARCH" ] || CANCELLER_PKGS+=("libstdc++6:$ARCH")
elif [ "$ARCH" = "$HOST_ARCH" ]; then
    CANCELLER_PKGS=(libwebrtc-audio-processing-dev)
else
    CANCELLER_PKGS=("libwebrtc-audio-processing-dev:$ARCH")
fi
export CARGO_TARGET_DIR
BUILD_STD=()
if [ "$ARCH" = "$HOST_ARCH" ]; then
    ensure_pkgs "${COMMON_PKGS[@]}" gcc g++ libc6-dev \
        libasound2-dev libopus-dev "${CANCELLER_PKGS[@]}"
    if ! command -v cargo >/dev/null; then
        ensure_pkgs rustc-web cargo-web
        export RUSTC=/usr/bin/rustc
    fi
    CARGO=$(command -v cargo)
    CARGO_TARGET_DIR=$ROOT/target
    TARGET_ARGS=()
    BIN=$CARGO_TARGET_DIR/$PROFILE/realtime-voiced
else
    if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
        step "adding dpkg architecture $ARCH"
        "${SUDO[@]}" dpkg --add-architecture "$ARCH"
        APT_UPDATED=
    fi
    ensure_pkgs "${COMMON_PKGS[@]}" rustc-web cargo-web "gcc-$GNU" "g++-$GNU" "libc6-dev-$ARCH-cross" \
        "libasound2-dev:$ARCH" "libopus-dev:$ARCH" "${CANCELLER_PKGS[@]}"
    export RUSTC=/usr/bin/rustc
    CARGO=/usr/bin/cargo
    RUST_VERSION=$(dpkg-query -W -f='${Version}' rustc-web)
    SYSROOT=$("$RUSTC" --print sysroot)
    if [ ! -d "$SYSROOT/lib/rustlib/$TRIPLE/lib" ]; then
        # The prebuilt standard library must match rustc exactly; when the target's index does not
        # carry that version, build the standard library from Debian's sources instead.
        if apt-cache -o APT::Architectures="$APT_ARCHS" show "libstd-rust-web-dev:$ARCH" 2>/dev/null |
            grep -qxF "Version: $RUST_VERSION"; then
            step "installing the $ARCH standard library"
            apt_install "libstd-rust-web-dev:$ARCH=$RUST_VERSION"
        else
            echo "note: no libstd-rust-web-dev:$ARCH $RUST_VERSION in the archive; building std from rust-web-src" >&2
            ensure_pkgs rust-web-src
        fi
    fi
    if [ ! -d "$SYSROOT/lib/rustlib/$TRIPLE/lib" ]; then
        export RUSTC_BOOTSTRAP=1
        BUILD_STD=("-Zbuild-std=std,panic_abort")
    fi
    # shellcheck source=packaging/cross-env.sh
    . "$ROOT/packaging/cross-env.sh"
    cross_env "$TRIPLE" "$GNU"
    # One target directory per cross target: the host's target/ stays untouched, and build scripts
    # that track RUSTC_BOOTSTRAP do not rebuild everything when switching targets.
    CARGO_TARGET_DIR=$ROOT/target/cross-$ARCH
    TARGET_ARGS=(--target "$TRIPLE")
    BIN=$CARGO_TARGET_DIR/$TRIPLE/$PROFILE/realtime-voiced
fi

if ! cargo-deb --version >/dev/null 2>&1; then
    step "installing cargo-deb"
    "$CARGO" install --locked cargo-deb
fi

step "building realtime-voiced for $ARCH ($PROFILE profile) with $("${RUSTC:-rustc}" --version)"
BUILD_START=$SECONDS
"$CARGO" build --profile "$PROFILE" --locked "${TARGET_ARGS[@]}" "${BUILD_STD[@]}" --bin realtime-voiced
BUILD_TIME=$((SECONDS - BUILD_START))
BIN_DESC=$(file -b "$BIN" | cut -d , -f 1-2)
step "built in ${BUILD_TIME}s: $BIN_DESC, $(stat -c %s "$BIN") bytes"
if [ -n "${ALSO_BUILD_SIM:-}" ]; then
    # The simulator for the same architecture, with the same toolchain (packaging/device-test.sh
    # runs it inside the guest). It is not packaged.
    step "building realtime-sim for $ARCH"
    "$CARGO" build --release --locked "${TARGET_ARGS[@]}" "${BUILD_STD[@]}" -p realtime-sim --bin realtime-sim
fi

# The release profile already strips; the host's strip cannot read foreign binaries.
mkdir -p "$OUT_DIR"
DEB=$(CARGO="$CARGO" cargo-deb --no-build --no-strip --profile "$PROFILE" "${TARGET_ARGS[@]}" --output "$OUT_DIR" |
    tail -n 1)
step "done: $DEB"
dpkg-deb -f "$DEB" Package Version Architecture Depends
