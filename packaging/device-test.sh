#!/bin/bash
# The package on a booted device: a Debian 12 guest under QEMU (TCG) with systemd as PID 1,
# journald, the system bus and an ALSA Loopback card.
#
#   packaging/device-test.sh amd64|arm64          build the package, boot, test, power off
#   packaging/device-test.sh --image-only ARCH    only build (or check) the cached guest image
#
# 1. Builds, once, a guest image with the package's runtime dependencies preinstalled
#    (debootstrap; cached under target/device-test/ARCH, rebuilt when the recipe below changes),
#    so that the guest needs no network: it runs with -nic none.
# 2. Builds the .deb (packaging/build-deb.sh) and the simulator for ARCH, writes them with the
#    driver (packaging/device-test/driver.sh) into a copy of the image (debugfs, no mount), and
#    boots it twice: the driver installs and tests the package as a user would, then powers off;
#    the second boot checks that the enabled service came back, then stops, analyses and purges.
# 3. Prints each check as `PASS name: detail` or `FAIL name: detail`, then
#    `device-test ARCH: N/M passed`; exits non-zero on any FAIL. QEMU is always stopped.
#
# Needs root (debootstrap, chroot) on Debian 12; installs what it needs with apt-get.
# DEVICE_TEST_NO_BUILD=1 reuses target/debian's newest package and the built simulator.
set -euo pipefail

usage() {
    echo "usage: $0 [--image-only] amd64|arm64" >&2
    exit 2
}
IMAGE_ONLY=
if [ "${1:-}" = --image-only ]; then
    IMAGE_ONLY=1
    shift
fi
[ $# -eq 1 ] || usage
ARCH=$1
case "$ARCH" in
    amd64)
        # Two vCPUs (one host thread each): with one, the daemon, the simulator and aplay together
        # starved the guest for seconds and the daemon rightly called the media path lost.
        KERNEL_PKG=linux-image-amd64
        QEMU_SYSTEM=(qemu-system-x86_64 -accel tcg -smp 2)
        QEMU_PKG=qemu-system-x86
        CONSOLE=ttyS0
        TRIPLE=x86_64-unknown-linux-gnu
        ;;
    arm64)
        KERNEL_PKG=linux-image-arm64
        QEMU_SYSTEM=(qemu-system-aarch64 -accel tcg -M virt -cpu cortex-a72 -smp 2)
        QEMU_PKG=qemu-system-arm
        CONSOLE=ttyAMA0
        TRIPLE=aarch64-unknown-linux-gnu
        ;;
    *) usage ;;
esac
[ "$(id -u)" -eq 0 ] || {
    echo "$0: needs root (debootstrap, chroot)" >&2
    exit 2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
HOST_ARCH=$(dpkg --print-architecture)
CACHE=$ROOT/target/device-test/$ARCH
WORK=$CACHE/run
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Bounds, in seconds, of each part that could otherwise hang.
DEBOOTSTRAP_TIMEOUT=${DEVICE_TEST_DEBOOTSTRAP_TIMEOUT:-3600}
BOOT_TIMEOUT=${DEVICE_TEST_BOOT_TIMEOUT:-$([ "$ARCH" = amd64 ] && echo 900 || echo 2400)}
START=$SECONDS

step() { printf '==> %s (%ds)\n' "$*" $((SECONDS - START)) >&2; }

# --- host packages -----------------------------------------------------------------------------
ensure_pkgs() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    step "installing: ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq ||
        echo "warning: apt-get update failed; using the indexes already there" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}
HOST_PKGS=(debootstrap e2fsprogs "$QEMU_PKG" espeak-ng sox coreutils util-linux)
[ "$ARCH" = "$HOST_ARCH" ] || HOST_PKGS+=(qemu-user-static binfmt-support)
ensure_pkgs "${HOST_PKGS[@]}"

# --- the guest image ----------------------------------------------------------------------------
# What the package depends on (and recommends), so that `apt install ./…deb` needs no network,
# and what a device has: systemd, udev, the system bus, ALSA's tools.
GUEST_PKGS=(systemd-sysv udev kmod dbus procps util-linux adduser ca-certificates alsa-utils
    libasound2 libopus0 libstdc++6 libgcc-s1 initramfs-tools)
# The arm64 package links the echo canceller statically (Cargo.toml): its guest goes without
# Debian's library, so a package that still needed it would fail to install.
[ "$ARCH" = arm64 ] || GUEST_PKGS+=(libwebrtc-audio-processing1)
# Modules the initramfs needs to find the root file system on a virtio disk. A short list
# instead of initramfs-tools' default (most of the kernel's modules) makes the image's build
# minutes shorter under arm64 emulation.
INITRD_MODULES=(virtio_pci virtio_mmio virtio_blk ext4 crc32c_generic)

CHROOT_MOUNTS=()
umount_chroot() {
    local m
    for m in "${CHROOT_MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
    CHROOT_MOUNTS=()
}

# shellcheck disable=SC2012 # the kernel's own file names
build_image() {
    local rootfs=$CACHE/rootfs
    rm -rf "$rootfs" "$CACHE/base.img" "$CACHE/vmlinuz" "$CACHE/initrd.img" "$CACHE/stamp"
    mkdir -p "$rootfs"
    if [ "$ARCH" != "$HOST_ARCH" ]; then
        # Foreign binaries in the chroot run through qemu-user (binfmt_misc is not always mounted).
        [ -e /proc/sys/fs/binfmt_misc/register ] ||
            mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    step "debootstrap $ARCH bookworm (cached afterwards)"
    local include
    include=$(IFS=,; echo "${GUEST_PKGS[*]}")
    timeout "$DEBOOTSTRAP_TIMEOUT" debootstrap --arch="$ARCH" --variant=minbase \
        --include="$include" bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
        tail -n 30 "$CACHE/debootstrap.log" >&2
        return 1
    }
    printf 'MODULES=list\n' >"$rootfs/etc/initramfs-tools/conf.d/device-test"
    printf '%s\n' "${INITRD_MODULES[@]}" >>"$rootfs/etc/initramfs-tools/modules"
    mount -t proc proc "$rootfs/proc"
    CHROOT_MOUNTS+=("$rootfs/proc")
    step "installing $KERNEL_PKG in the guest root"
    timeout "$DEBOOTSTRAP_TIMEOUT" chroot "$rootfs" sh -c "
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends $KERNEL_PKG &&
        apt-get clean" >"$CACHE/kernel.log" 2>&1 || {
        tail -n 30 "$CACHE/kernel.log" >&2
        return 1
    }
    umount_chroot

    # A device's settings: its disk, its name, no login prompt on the console the test reads,
    # no timers that would run apt or fsck jobs in the middle of a test.
    echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$rootfs/etc/fstab"
    echo device-test >"$rootfs/etc/hostname"
    : >"$rootfs/etc/resolv.conf"
    local unit
    for unit in "serial-getty@$CONSOLE.service" getty@tty1.service apt-daily.timer \
        apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service; do
        ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
    done
    mkdir -p "$rootfs/var/log/journal"
    cp "$(ls "$rootfs"/boot/vmlinuz-* | head -n 1)" "$CACHE/vmlinuz"
    cp "$(ls "$rootfs"/boot/initrd.img-* | head -n 1)" "$CACHE/initrd.img"
    step "making the disk image"
    mkfs.ext4 -q -F -L root -d "$rootfs" "$CACHE/base.img.tmp" 3G
    mv "$CACHE/base.img.tmp" "$CACHE/base.img"
    rm -rf "$rootfs"
    echo "$RECIPE" >"$CACHE/stamp"
}

# The cache is rebuilt when anything that makes the image changes.
RECIPE=$( {
    declare -f build_image
    echo "${GUEST_PKGS[*]} ${INITRD_MODULES[*]} $KERNEL_PKG $MIRROR"
} | sha256sum | cut -d ' ' -f 1)
mkdir -p "$CACHE"

QEMU_PIDFILE=$CACHE/qemu.pid
cleanup() {
    local pid
    if [ -s "$QEMU_PIDFILE" ]; then
        pid=$(cat "$QEMU_PIDFILE")
        kill "$pid" 2>/dev/null && sleep 1 && kill -9 "$pid" 2>/dev/null
        rm -f "$QEMU_PIDFILE"
    fi
    [ -z "${TIMEOUT_PID:-}" ] || kill "$TIMEOUT_PID" 2>/dev/null || true
    umount_chroot
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -s "$CACHE/base.img" ] && [ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$RECIPE" ]; then
    step "reusing the guest image $CACHE/base.img"
else
    IMAGE_START=$SECONDS
    build_image
    step "guest image built in $((SECONDS - IMAGE_START))s"
fi
[ -z "$IMAGE_ONLY" ] || exit 0

# --- the package, the simulator and the question ------------------------------------------------
if [ -n "${DEVICE_TEST_NO_BUILD:-}" ]; then
    step "reusing the built package and simulator (DEVICE_TEST_NO_BUILD)"
else
    # The release profile by default: the shipped `dist` profile differs only in how hard it
    # optimises for size, and its whole-program link would add about ten minutes to every run.
    # PROFILE=dist tests exactly what ships.
    step "building the package (${PROFILE:-release} profile) and the simulator for $ARCH"
    PROFILE=${PROFILE:-release} ALSO_BUILD_SIM=1 nice -n 10 "$ROOT/packaging/build-deb.sh" "$ARCH" >"$CACHE/build.log" 2>&1 || {
        tail -n 40 "$CACHE/build.log" >&2
        echo "device-test $ARCH: the package did not build" >&2
        exit 1
    }
fi
# shellcheck disable=SC2012 # our own file names, newest first
DEB=$(ls -t "$ROOT"/target/debian/realtime-voiced_*_"$ARCH".deb 2>/dev/null | head -n 1)
if [ "$ARCH" = "$HOST_ARCH" ]; then
    SIM=$ROOT/target/release/realtime-sim
else
    SIM=$ROOT/target/cross-$ARCH/$TRIPLE/release/realtime-sim
fi
if [ ! -f "$DEB" ] || [ ! -x "$SIM" ]; then
    echo "device-test $ARCH: no package or simulator (${DEB:-no .deb}, $SIM)" >&2
    exit 1
fi
step "package $(basename "$DEB")"

rm -rf "$WORK"
mkdir -p "$WORK"
# What the microphone hears: a spoken question with a little quiet around it, as 48 kHz mono.
espeak-ng -s 150 -w "$WORK/question-22k.wav" "What is the weather like in Paris today?"
sox "$WORK/question-22k.wav" -r 48000 -c 1 -b 16 -e signed-integer "$WORK/question.wav" pad 0.3 1.5

# --- the guest's disk: the cached image and the test's files ---------------------------------------
DISK=$WORK/disk.img
cp --sparse=always "$CACHE/base.img" "$DISK"
GUEST_DIR=/root/device-test
debugfs -w -f - "$DISK" >"$WORK/debugfs.log" 2>&1 <<CMDS
mkdir $GUEST_DIR
write $DEB $GUEST_DIR/$(basename "$DEB")
write $SIM $GUEST_DIR/realtime-sim
write $ROOT/packaging/device-test/driver.sh $GUEST_DIR/driver.sh
write $WORK/question.wav $GUEST_DIR/question.wav
write $ROOT/packaging/device-test/device-test.service /etc/systemd/system/device-test.service
mkdir /etc/systemd/system/multi-user.target.wants
symlink /etc/systemd/system/multi-user.target.wants/device-test.service /etc/systemd/system/device-test.service
CMDS
guest_cat() { debugfs -R "cat $GUEST_DIR/$1" "$DISK" 2>/dev/null; }
guest_cat driver.sh | cmp -s - "$ROOT/packaging/device-test/driver.sh" || {
    cat "$WORK/debugfs.log" >&2
    echo "device-test $ARCH: cannot write the test's files into the image" >&2
    exit 1
}

# --- boots ---------------------------------------------------------------------------------------
RESULTS=()
boot() {
    local n=$1 log=$WORK/console-$1.log rc t0=$SECONDS
    step "boot $n of the $ARCH guest (at most ${BOOT_TIMEOUT}s)"
    timeout --kill-after=10 "$BOOT_TIMEOUT" "${QEMU_SYSTEM[@]}" -m 1024 -no-reboot \
        -display none -monitor none -serial "file:$log" -nic none -pidfile "$QEMU_PIDFILE" \
        -device virtio-rng-pci -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
        -append "root=/dev/vda rw console=$CONSOLE quiet" \
        -drive "file=$DISK,format=raw,if=virtio" >"$WORK/qemu-$n.out" 2>&1 &
    TIMEOUT_PID=$!
    # The driver's lines as they come, for a long run's log (the results are read from the disk).
    # tail ends with QEMU (--pid), and the rest of the pipeline with it.
    tail -n +1 -F --pid="$TIMEOUT_PID" "$log" 2>/dev/null |
        grep --line-buffered -aE '^(PASS|FAIL|     )' | sed -u "s/^/    [guest $ARCH boot $n] /" >&2 &
    local tail_pid=$!
    rc=0
    wait "$TIMEOUT_PID" || rc=$?
    TIMEOUT_PID=
    rm -f "$QEMU_PIDFILE"
    wait "$tail_pid" 2>/dev/null || true
    local took=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        RESULTS+=("PASS boot-$n: the guest booted, ran the driver and powered off in ${took} s")
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        RESULTS+=("FAIL boot-$n: no power-off within ${BOOT_TIMEOUT} s; console: $(tail -c 600 "$log" | tr -d '\r' | tr '\n' '|')")
    else
        RESULTS+=("FAIL boot-$n: QEMU exited $rc after ${took} s: $(tail -n 3 "$WORK/qemu-$n.out" | tr '\n' ' ')")
    fi
}
boot 1
[ "$(guest_cat phase)" != 2 ] || boot 2

# Everything the guest wrote, for a look afterwards; the results from its disk.
for f in results.log driver.out journal-boot1.txt journal-boot2.txt security.txt answer.raw; do
    debugfs -R "dump $GUEST_DIR/$f $WORK/$f" "$DISK" >/dev/null 2>&1 || true
done
[ -f "$WORK/results.log" ] || : >"$WORK/results.log"

# Every check the driver makes; one it never reached fails.
CHECKS=(sound-card install unit-ready sandbox-cpuinfo bus-introspect bus-start-denied bus-start conversation-heard
    conversation-answer device-latency journal-fields journal-quiet journal-no-secret reload watchdog
    reboot stop security purge purge-bus)
echo
echo "device-test $ARCH: $(basename "$DEB") in Debian 12 under QEMU (TCG), $(uname -m) host"
cat "$WORK/results.log"
for r in "${RESULTS[@]}"; do echo "$r"; done
for c in "${CHECKS[@]}"; do
    grep -Eq "^(PASS|FAIL) $c:" "$WORK/results.log" || echo "FAIL $c: not reached"
done >"$WORK/missing"
cat "$WORK/missing"
PASSED=$( { cat "$WORK/results.log"; printf '%s\n' "${RESULTS[@]}"; } | grep -c '^PASS ' || true)
FAILED=$( { cat "$WORK/results.log" "$WORK/missing"; printf '%s\n' "${RESULTS[@]}"; } | grep -c '^FAIL ' || true)
echo "     (guest files in $WORK; $((SECONDS - START)) s in all)"
echo "device-test $ARCH: $PASSED/$((PASSED + FAILED)) passed"
[ "$FAILED" -eq 0 ]
