#!/bin/bash
# The device's Opus profile against the service's (src/audio/opus.rs, OpusProfile): how speech
# scores after coding (PESQ, wideband, ITU-T P.862.2: 1 bad to 4.64), what the encoder costs on
# this machine, and the instructions a frame takes on arm64 (qemu-user, as
# benches/opus-armhf/run.sh counts them).
#
# Speech: the call bench's spoken paragraph and three more sentences in three espeak-ng voices,
# and a human voice: alsa-utils' eight channel names ("Front left" ...), one recording. Losses:
# the same packets lost for every profile, a lost packet decoded from the next one's FEC data
# where it came (VOIP), by concealment otherwise, as the daemon's receiver does.
#
# Needs gcc, libopus-dev, espeak-ng, sox, alsa-utils, python3-venv (PESQ comes from PyPI into
# target/opus-profiles/venv), and for the counts gcc-aarch64-linux-gnu, libopus-dev:arm64 and
# qemu-user-static; without those the counts are skipped.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$ROOT/target/opus-profiles
mkdir -p "$WORK"
cd "$WORK"

raw() { sox "$1" -r 48000 -c 1 -b 16 -e signed-integer -t raw "$2"; }
espeak-ng -s 150 -w paragraph.wav "The kitchen light is on, the oven is warm, and the kettle \
has just boiled. Tomorrow will be cloudy in the morning with some sun after lunch, and a light \
wind from the west. Seven times eight is fifty six."
raw paragraph.wav paragraph.raw
ask="Please set a timer for twelve minutes and remind me to call my sister about the weekend. \
What is the weather going to be like in Edinburgh on Saturday afternoon? Turn the living room \
lamp down to thirty percent."
espeak-ng -v en-us+f3 -s 160 -w female.wav "$ask" && raw female.wav female.raw
espeak-ng -v en+m2 -s 140 -w male.wav "$ask" && raw male.wav male.raw
espeak-ng -v de -s 150 -w german.wav "Bitte stell einen Wecker auf sieben Uhr morgen früh \
und sag mir, wie das Wetter in Berlin wird." && raw german.wav german.raw
names=/usr/share/sounds/alsa
sox "$names"/{Front_Left,Front_Center,Front_Right,Side_Left,Side_Right,Rear_Left,Rear_Center,Rear_Right}.wav \
    -r 48000 -c 1 -b 16 -e signed-integer -t raw human.raw

gcc -O2 -Wall -Wextra -o profiles "$HERE/profiles.c" -lopus
if [ ! -x venv/bin/python ]; then
    python3 -m venv venv
    timeout 600 venv/bin/pip install --quiet numpy pesq
fi
cat > pesq_wb.py <<'PY'
import subprocess, sys
import numpy as np
from pesq import pesq
def at16k(path):
    out = subprocess.run(["sox", "-t", "raw", "-r", "48000", "-e", "signed", "-b", "16", "-c", "1",
                          path, "-r", "16000", "-t", "raw", "-"], capture_output=True, check=True)
    return np.frombuffer(out.stdout, dtype=np.int16).astype(np.float32) / 32768
ref, deg = at16k(sys.argv[1]), at16k(sys.argv[2])
n = min(len(ref), len(deg))
print("%.2f" % pesq(16000, ref[:n], deg[:n], "wb"))
PY

PROFILES=("voip 32000" "celt 64000" "celt 80000" "celt 96000")
SAMPLES=(paragraph female male german human)
printf '\nPESQ-WB (and for the paragraph: bytes a packet, encoder µs a frame on this machine)\n'
printf '%-12s %-6s' profile loss
printf ' %9s' "${SAMPLES[@]}"
printf ' %7s %9s\n' bytes "enc µs"
for p in "${PROFILES[@]}"; do
    for loss in 0 0.02 0.05; do
        printf '%-12s %-6s' "${p/ /@}" "$loss"
        stats=
        for s in "${SAMPLES[@]}"; do
            out=$(./profiles code "$s.raw" $p "$loss" out.raw)
            [ "$s" = paragraph ] && stats=$out
            printf ' %9s' "$(venv/bin/python pesq_wb.py "$s.raw" out.raw)"
        done
        read -r bytes us <<<"$stats"
        printf ' %7s %9s\n' "$bytes" "$us"
    done
done

# Where VOIP's FEC overtakes CELT as losses grow (src/transport/webrtc/uplink.rs switches
# there): one pattern of losses decides a lot at these rates, so each cell is the mean over six.
SEEDS=(1 2 3 4 5 6)
printf '\nPESQ-WB as losses grow, mean over %d patterns of lost packets\n' "${#SEEDS[@]}"
printf '%-12s %-6s' profile loss
printf ' %9s' "${SAMPLES[@]}" all
printf '\n'
for loss in 0.03 0.04 0.05 0.06 0.08 0.10; do
    for p in "voip 32000" "celt 80000"; do
        printf '%-12s %-6s' "${p/ /@}" "$loss"
        sum=0
        for s in "${SAMPLES[@]}"; do
            # A failed seed must stop the script, not shrink the mean: `errexit` is off in here.
            mean=$(for seed in "${SEEDS[@]}"; do
                ./profiles code "$s.raw" $p "$loss" out.raw "$seed" >/dev/null || exit 1
                venv/bin/python pesq_wb.py "$s.raw" out.raw || exit 1
            done | awk -v n="${#SEEDS[@]}" '{ t += $1 } END { if (NR != n) exit 1; printf "%.2f", t / n }')
            sum=$(awk -v a="$sum" -v b="$mean" 'BEGIN { print a + b }')
            printf ' %9s' "$mean"
        done
        printf ' %9s\n' "$(awk -v t="$sum" -v n="${#SAMPLES[@]}" 'BEGIN { printf "%.2f", t / n }')"
    done
done

if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64-static >/dev/null; then
    aarch64-linux-gnu-gcc -O2 -o profiles-arm64 "$HERE/profiles.c" -lopus
    count() { # profile bitrate frames -> instructions executed
        timeout 1800 qemu-aarch64-static -L /usr/aarch64-linux-gnu -singlestep -d exec,nochain \
            ./profiles-arm64 count paragraph.raw "$1" "$2" "$3" 2>&1 >/dev/null | grep -c '^Trace'
    }
    printf '\narm64, Debian'"'"'s libopus: instructions a frame, encode and decode (70 frames less 20)\n'
    for p in "voip 32000" "celt 80000"; do
        few=$(count $p 20)
        many=$(count $p 70)
        printf '%-12s %12d\n' "${p/ /@}" $(((many - few) / 50))
    done
fi
