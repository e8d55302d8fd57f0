#!/usr/bin/env bash
# README's run command: realtime-voiced end to end on a machine with no sound card and no API key.
#
# It starts, all on this machine and all stopped at the end:
#   - the realtime simulator on 127.0.0.1:18080 (stands in for the OpenAI Realtime API),
#   - PulseAudio with a null sink, and ALSA devices on it: "demo_mic" plays a spoken question
#     (espeak-ng) into the microphone in real time, "demo_speaker" records what the daemon plays,
#   - a private D-Bus,
# then runs realtime-voiced with config/dev/demo.toml, starts a conversation over D-Bus and
# shows the state changes and transcripts. Installs what it needs (Debian 12, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_TO_RUN=${DEMO_SECONDS:-25}

PACKAGES=(build-essential pkg-config libclang-dev libasound2-dev libopus-dev libwebrtc-audio-processing-dev
    alsa-utils libasound2-plugins pulseaudio pulseaudio-utils dbus dbus-bin systemd espeak-ng sox coreutils)
# On arm64 the echo canceller is built from the source its crate bundles (Cargo.toml).
if [ "$(dpkg --print-architecture)" = arm64 ]; then
    PACKAGES+=(autoconf automake libtool)
fi
bash tests/install-packages.sh "${PACKAGES[@]}"

echo "== building"
cargo build --quiet --workspace --bins

WORK=$(mktemp -d /tmp/realtime-voiced-demo.XXXXXX)
PIDS=()
cleanup() {
    # Newest first: the daemon stops before the bus and the sound server it uses.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

echo "== a private D-Bus"
dbus-daemon --session --nofork --print-address=1 --address="unix:path=$WORK/bus" > "$WORK/bus.address" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$WORK/bus.address" ] && break; sleep 0.1; done
BUS=$(head -n1 "$WORK/bus.address")
busctl_() { timeout 10 busctl --address="$BUS" "$@"; }
call() { busctl_ call io.thrive.RealtimeVoice1 /io/thrive/RealtimeVoice1 io.thrive.RealtimeVoice1 "$@"; }

echo "== virtual audio: PulseAudio null sink behind ALSA devices demo_mic and demo_speaker"
mkdir -p "$WORK/pulse"
PULSE_RUNTIME_PATH="$WORK/pulse" HOME="$WORK" pulseaudio -n --daemonize=no --exit-idle-time=-1 \
    --use-pid-file=no --disallow-exit \
    -L "module-native-protocol-unix socket=$WORK/pulse-native auth-anonymous=1" \
    -L "module-null-sink sink_name=nullsink rate=48000 channels=1 format=s16le" >/dev/null 2>&1 &
PIDS+=($!)
# The socket appears before the null sink is loaded: wait until the server lists it.
for _ in $(seq 100); do
    pactl --server "unix:$WORK/pulse-native" list short sinks 2>/dev/null | grep -q nullsink && break
    sleep 0.1
done

# What the microphone hears: two seconds of quiet, a question, then quiet.
espeak-ng -s 150 -w "$WORK/question.wav" "Hello! What is the weather like in Paris today?"
sox -n -r 48000 -c 1 -b 16 -e signed-integer -t raw "$WORK/quiet.raw" trim 0 2
sox "$WORK/question.wav" -r 48000 -c 1 -b 16 -e signed-integer -t raw "$WORK/question.raw"
sox -n -r 48000 -c 1 -b 16 -e signed-integer -t raw "$WORK/tail.raw" trim 0 120
cat "$WORK/quiet.raw" "$WORK/question.raw" "$WORK/tail.raw" > "$WORK/mic.raw"
cat > "$WORK/asound.conf" <<CONF
pcm.demo_mic {
    type file
    slave.pcm { type pulse server "unix:$WORK/pulse-native" device "nullsink.monitor" }
    file "/dev/null"
    infile "$WORK/mic.raw"
    format "raw"
}
pcm.demo_speaker {
    type file
    slave.pcm { type pulse server "unix:$WORK/pulse-native" device "nullsink" }
    file "$WORK/speaker.raw"
    format "raw"
}
CONF

echo "== the realtime simulator on 127.0.0.1:18080"
"$ROOT/target/debug/realtime-sim" --port 18080 --transcript "what is the weather like in Paris today" \
    > "$WORK/sim.out" 2> "$WORK/sim.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/sim.out" 2>/dev/null && break; sleep 0.1; done

echo "== realtime-voiced --config config/dev/demo.toml"
DBUS_SESSION_BUS_ADDRESS="$BUS" ALSA_CONFIG_PATH="/usr/share/alsa/alsa.conf:$WORK/asound.conf" \
    OPENAI_API_KEY=sk-demo-not-a-real-key STATE_DIRECTORY="$WORK/state" RUST_LOG=realtime_voiced=info \
    "$ROOT/target/debug/realtime-voiced" --config config/dev/demo.toml \
    2> >(grep --line-buffered -E "starting|ready|state changed|transcript|connected|conversation ended|stopping|ERROR|WARN" >&2) &
PIDS+=($!)
for _ in $(seq 100); do busctl_ status io.thrive.RealtimeVoice1 >/dev/null 2>&1 && break; sleep 0.1; done

echo "== busctl call … Start"
call Start
sleep "$SECONDS_TO_RUN"
echo "== busctl get-property … Stats"
busctl_ get-property io.thrive.RealtimeVoice1 /io/thrive/RealtimeVoice1 io.thrive.RealtimeVoice1 Stats
echo "== busctl call … Stop"
call Stop 2>/dev/null || echo "(the conversation had already ended: idle timeout)"
sleep 1
sox -r 48000 -c 1 -b 16 -e signed-integer -t raw "$WORK/speaker.raw" "$WORK/speaker.wav" 2>/dev/null || true
echo "== done: what the speaker played is in $WORK/speaker.wav"
