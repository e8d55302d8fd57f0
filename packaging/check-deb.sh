#!/bin/bash
# Checks a package built by packaging/build-deb.sh:
#
#   packaging/check-deb.sh amd64|arm64|armhf [path/to/realtime-voiced_…_ARCH.deb]
#
# lintian (errors fail, warnings are listed), the file list and conffiles, the control fields,
# the maintainer scripts (nothing enabled or started on install), systemd-analyze verify and
# security on the shipped unit, and the shipped binary's architecture; the binary then runs
# `--version` and `check-config` on the shipped configuration, under qemu-user for arm64/armhf.
# Installs what it needs with apt-get (through sudo when not root).
# `test && pass || fail` is safe here: pass, fail and usage never fail.
# shellcheck disable=SC2015
set -euo pipefail

usage() {
    echo "usage: $0 amd64|arm64|armhf [package.deb]" >&2
    exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
ARCH=$1
case "$ARCH" in
    amd64) FILE_ARCH="x86-64" QEMU="" GNU=x86_64-linux-gnu ;;
    arm64) FILE_ARCH="ARM aarch64" QEMU=qemu-aarch64-static GNU=aarch64-linux-gnu ;;
    armhf) FILE_ARCH="ARM, EABI5" QEMU=qemu-arm-static GNU=arm-linux-gnueabihf ;;
    *) usage ;;
esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC2012 # our own file names, newest first
DEB=${2:-$(ls -t "$ROOT"/target/debian/realtime-voiced_*_"$ARCH".deb 2>/dev/null | head -n 1)}
[ -n "$DEB" ] && [ -f "$DEB" ] || {
    echo "no package for $ARCH in target/debian/: run packaging/build-deb.sh $ARCH first" >&2
    exit 1
}
# Worst systemd-analyze security exposure accepted, in tenths as --threshold counts them
# (0 = safest, 100 = unsafe; the shipped unit scores 1.9, i.e. 19).
SECURITY_THRESHOLD=${SECURITY_THRESHOLD:-30}
UNIT=realtime-voiced.service
HOST_ARCH=$(dpkg --print-architecture)
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)

FAILED=0
pass() { printf 'ok   %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*"
    FAILED=1
}

APT_ARCHS=$HOST_ARCH
[ "$ARCH" = "$HOST_ARCH" ] || APT_ARCHS="$HOST_ARCH,$ARCH"
ensure_pkgs() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        -o APT::Architectures="$APT_ARCHS" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_pkgs lintian file systemd binutils
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "checking $DEB"

# --- control fields --------------------------------------------------------------------------
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Architecture)" = "$ARCH" ] && pass "Architecture: $ARCH" || fail "Architecture is $(field Architecture)"
DEPENDS=$(field Depends)
echo "     Depends: $DEPENDS"
# Package names may hold regex characters (libstdc++6): escape them before matching.
depends_on() {
    local name
    name=$(sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1")
    grep -Eq "(^|, )$name( |,|$)" <<<"$DEPENDS"
}
for dep in libc6 dbus ca-certificates adduser; do
    depends_on "$dep" && pass "depends on $dep" || fail "does not depend on $dep"
done
if grep -q -- "-cross" <<<"$DEPENDS"; then fail "depends on a cross-toolchain package"; fi
# A package name with an architecture ("libstdc++6:arm64"; ":any" is fine) is what a resolver
# writes when the target's package was not installed to read a version from. (An epoch follows
# "(>= ", never ", ".)
if grep -Eo '(^|, |\| )[a-z0-9][a-z0-9+.-]*:[a-z0-9]+' <<<"$DEPENDS" | grep -qv ':any$'; then
    fail "Depends names an architecture: build with the target's library packages installed"
fi

# --- files -----------------------------------------------------------------------------------
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$WORK/files"
for f in /usr/bin/realtime-voiced /lib/systemd/system/$UNIT \
    /usr/share/dbus-1/system.d/io.thrive.RealtimeVoice1.conf /etc/realtime-voiced/config.toml \
    /usr/share/doc/realtime-voiced/copyright /usr/share/doc/realtime-voiced/changelog.Debian.gz \
    /usr/share/doc/realtime-voiced/README.md /usr/share/man/man8/realtime-voiced.8.gz; do
    grep -qx "$f" "$WORK/files" && pass "ships $f" || fail "does not ship $f"
done
grep -q "realtime-sim" "$WORK/files" && fail "ships the simulator" || pass "does not ship realtime-sim"
# arm64 links WebRTC's audio processing statically (with NEON; see Cargo.toml): its licence comes
# with the package and Debian's library is not needed. The other architectures use Debian's.
WAP_DOC=/usr/share/doc/realtime-voiced/webrtc-audio-processing
for f in COPYING PATENTS LICENSE_THIRD_PARTY; do
    grep -qx "$WAP_DOC/$f" "$WORK/files" && pass "ships $WAP_DOC/$f" || fail "does not ship $WAP_DOC/$f"
done
if [ "$ARCH" = arm64 ]; then
    depends_on libwebrtc-audio-processing1 && fail "depends on libwebrtc-audio-processing1" ||
        pass "canceller linked statically (no libwebrtc-audio-processing1)"
else
    depends_on libwebrtc-audio-processing1 && pass "depends on libwebrtc-audio-processing1" ||
        fail "does not depend on libwebrtc-audio-processing1"
fi
dpkg-deb -c "$DEB" | grep -Eq '^-rwxr-xr-x (root/root|0/0) .* \./usr/bin/realtime-voiced$' &&
    pass "binary is root:root 0755" || fail "binary owner or mode"

mkdir "$WORK/control" "$WORK/root"
dpkg-deb -e "$DEB" "$WORK/control"
dpkg-deb -x "$DEB" "$WORK/root"
grep -qx /etc/realtime-voiced/config.toml "$WORK/control/conffiles" 2>/dev/null &&
    pass "config.toml is a conffile" || fail "config.toml is not a conffile"
for s in postinst prerm postrm; do
    [ -x "$WORK/control/$s" ] && sh -n "$WORK/control/$s" && pass "$s present and parses" || fail "$s"
done
# Starting a voice assistant that has no key yet would only fail: installation leaves it off.
# (The message telling the user how to enable it is a here-document ending in MSG: not code.)
if sed "/<<'MSG'/,/^MSG\$/d; s/#.*//" "$WORK/control/postinst" |
    grep -Eq 'systemctl.*(enable|start)|deb-systemd-invoke +(start|restart) '; then
    fail "postinst enables or starts the service"
else
    pass "postinst neither enables nor starts the service"
fi

# --- lintian ---------------------------------------------------------------------------------
# Exit status 2 means lintian itself failed; 1 means it found errors.
set +e
lintian --tag-display-limit 0 "$DEB" >"$WORK/lintian" 2>&1
LINTIAN_RC=$?
set -e
sed 's/^/     lintian: /' "$WORK/lintian"
if grep -q '^E: ' "$WORK/lintian" || [ "$LINTIAN_RC" -gt 1 ]; then
    fail "lintian: $(grep -c '^E: ' "$WORK/lintian") error(s) (exit $LINTIAN_RC)"
else
    pass "lintian: no errors, $(grep -c '^W: ' "$WORK/lintian") warning(s)"
fi

# --- the unit --------------------------------------------------------------------------------
UNIT_FILE=$WORK/root/lib/systemd/system/$UNIT
# Verified where it will live. The package is not installed here, so the one complaint expected
# is that ExecStart's binary is missing; anything else about our unit fails the check.
systemd-analyze verify --man=no "$UNIT_FILE" >"$WORK/verify" 2>&1 || true
grep -v "Command /usr/bin/realtime-voiced is not executable" "$WORK/verify" >"$WORK/verify-ours" || true
sed 's/^/     verify: /' "$WORK/verify"
if grep -q "$UNIT" "$WORK/verify-ours"; then
    fail "systemd-analyze verify $UNIT"
else
    pass "systemd-analyze verify $UNIT"
fi
set +e
systemd-analyze security --offline=true --threshold="$SECURITY_THRESHOLD" --no-pager "$UNIT_FILE" \
    >"$WORK/security" 2>&1
SECURITY_RC=$?
set -e
grep -E 'Overall exposure' "$WORK/security" | sed 's/^→ /     /' || true
[ "$SECURITY_RC" -eq 0 ] && pass "systemd-analyze security: exposure within $SECURITY_THRESHOLD/100" ||
    { tail -n 30 "$WORK/security"; fail "systemd-analyze security above $SECURITY_THRESHOLD/100 (exit $SECURITY_RC)"; }

# --- the binary ------------------------------------------------------------------------------
BIN=$WORK/root/usr/bin/realtime-voiced
DESC=$(file -b "$BIN")
echo "     file: $DESC"
grep -q "$FILE_ARCH" <<<"$DESC" && pass "binary is $FILE_ARCH" || fail "binary is not $FILE_ARCH"
grep -q "not stripped" <<<"$DESC" && fail "binary is not stripped" || pass "binary is stripped"
# Every library the binary loads must come from a package it depends on (libgcc_s is left out on
# purpose by cargo-deb, as by dpkg-shlibdeps' users in Debian: it is always there).
NEEDED=$(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "     NEEDED: $(tr '\n' ' ' <<<"$NEEDED")"
for lib in $NEEDED; do
    case "$lib" in libgcc_s.so.* | ld-linux*) continue ;; esac
    # No owner is a failure to report, not a reason for pipefail to end the script unheard.
    owner=$({ dpkg -S "*/$GNU/$lib" 2>/dev/null || true; } | { grep -v -- '-cross' || true; } |
        head -n 1 | cut -d : -f 1)
    if [ -z "$owner" ]; then
        fail "$lib: no installed $ARCH package has it (install its -dev package for $ARCH)"
    elif depends_on "$owner"; then
        pass "$lib comes from $owner, a dependency"
    else
        fail "$lib comes from $owner, which is not in Depends"
    fi
done

RUN=()
if [ -n "$QEMU" ]; then
    # The binary's own libraries, from the target's multiarch packages; its loader comes with libc6.
    LIBS=()
    for dep in $(tr ',' '\n' <<<"$DEPENDS" | awk '{print $1}' | cut -d : -f 1 | grep '^lib'); do LIBS+=("$dep:$ARCH"); done
    ensure_pkgs qemu-user-static "${LIBS[@]}"
    # No -L: with the cross toolchain's sysroot the loader and the multiarch libc differ and hang.
    RUN=("$QEMU")
fi
run() { timeout 60 env -i PATH=/usr/bin:/bin HOME="$WORK" "${RUN[@]}" "$BIN" "$@"; }
if OUT=$(run --version 2>&1); then
    pass "--version: $OUT"
else
    fail "--version: $OUT"
fi
if OUT=$(run check-config --config "$WORK/root/etc/realtime-voiced/config.toml" 2>&1); then
    pass "check-config on the shipped configuration"
    head -n 3 <<<"$OUT" | sed 's/^/     /'
else
    printf '%s\n' "$OUT" | head -n 20
    fail "check-config on the shipped configuration"
fi

# --- install, upgrade, remove, purge on a throwaway overlay of this machine -------------------
if [ "$ARCH" = "$HOST_ARCH" ] && [ "$(id -u)" -eq 0 ]; then
    mkdir "$WORK/overlay"
    if timeout 300 unshare -m --propagation private "$ROOT/packaging/install-test.sh" "$DEB" \
        "$WORK/overlay" >"$WORK/install-test" 2>&1; then
        sed 's/^/     /' "$WORK/install-test"
        pass "install-test: maintainer scripts"
    else
        sed 's/^/     /' "$WORK/install-test"
        fail "install-test: maintainer scripts"
    fi
else
    echo "skip install-test: needs root and a $HOST_ARCH package"
fi

if [ "$FAILED" -ne 0 ]; then
    echo "FAILED: $DEB"
    exit 1
fi
echo "all checks passed: $DEB"
