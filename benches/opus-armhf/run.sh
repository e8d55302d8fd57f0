#!/bin/bash
# Opus on 32-bit ARM: instructions per 20 ms frame (encoded and decoded as the daemon does) with
# Debian's armhf libopus, once with /proc/cpuinfo as a Raspberry Pi 3 running a 32-bit system
# shows it, and once with /proc mounted as systemd's ProcSubset=pid mounts it (no cpuinfo):
# libopus picks its NEON and ARMv6 DSP code from that file at run time. The same two runs with
# Debian's arm64 libopus are the control: NEON is part of that architecture, the library never
# reads the file, and both must count alike.
#
# Counts the instructions executed under qemu-user, one translation block per instruction
# (-singlestep -d exec,nochain), for 20 and for 70 frames: the difference over 50 frames leaves
# out start-up. Needs root (a mount namespace each), espeak-ng, sox, and the packages
# gcc-arm-linux-gnueabihf, gcc-aarch64-linux-gnu, libopus-dev:armhf, libopus-dev:arm64 and
# qemu-user-static (Debian 12's 7.2, which reads the host's /proc/cpuinfo for an ARM guest;
# later versions make up their own).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$ROOT/target/opus-armhf
mkdir -p "$WORK"

# The call bench's paragraph (testkit::signals::PARAGRAPH), spoken as the benches speak it.
espeak-ng -s 150 -w "$WORK/speech.wav" "The kitchen light is on, the oven is warm, and the \
kettle has just boiled. Tomorrow will be cloudy in the morning with some sun after lunch, and \
a light wind from the west. Seven times eight is fifty six."
sox "$WORK/speech.wav" -r 48000 -c 1 -b 16 -e signed-integer -t raw "$WORK/speech.raw"

# in_proc SETUP COMMAND…: COMMAND in a mount namespace whose /proc/cpuinfo is SETUP's.
in_proc() {
    local setup=$1
    shift
    case $setup in
    pi3) unshare --mount -- sh -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' \
        "$HERE/cpuinfo-pi3" "$@" ;;
    subset-pid) unshare --mount --pid --fork -- sh -c \
        'mount -t proc -o subset=pid proc /proc && exec "$@"' sh "$@" ;;
    esac
}
count() { # qemu binary setup frames -> instructions executed
    in_proc "$3" timeout 1800 "$1" -singlestep -d exec,nochain \
        "$2" "$WORK/speech.raw" "$4" 2>&1 >/dev/null | grep -c '^Trace'
}

printf '%-6s %-40s %14s %8s\n' arch "/proc/cpuinfo" "insns/frame" bytes
for arch in armhf arm64; do
    case $arch in
    armhf) gnu=arm-linux-gnueabihf qemu=qemu-arm-static ;;
    arm64) gnu=aarch64-linux-gnu qemu=qemu-aarch64-static ;;
    esac
    bin=$WORK/frames-$arch
    "$gnu-gcc" -O2 -Wall -Wextra -o "$bin" "$HERE/frames.c" -lopus
    for setup in pi3 subset-pid; do
        few=$(count "$qemu" "$bin" "$setup" 20)
        many=$(count "$qemu" "$bin" "$setup" 70)
        bytes=$(in_proc "$setup" timeout 600 "$qemu" "$bin" "$WORK/speech.raw" 70)
        case $setup in
        pi3) label="a Pi 3's (Features: … edsp neon …)" ;;
        subset-pid) label="none (ProcSubset=pid)" ;;
        esac
        printf '%-6s %-40s %14d %8s\n' "$arch" "$label" $(((many - few) / 50)) "$bytes"
    done
done
