#!/bin/bash
# The device test's driver, run inside the guest at each boot by device-test.service (see
# packaging/device-test.sh, which copies it in with the package, the simulator and a spoken
# question). It does what a user does on a Pi, and checks what follows:
#   boot 1: load the Loopback card, `apt install ./realtime-voiced_*.deb`, write the key and the
#           configuration, `check-audio`, `systemctl enable --now`; the unit, the system bus and its
#           policy, the audio self-check over the bus, a spoken conversation through the sound
#           card, the journal, reload, the watchdog; reboot.
#   boot 2: the enabled service is back; stop, systemd-analyze security, purge; power off.
# Results go to /root/device-test/results.log (read from the disk image afterwards) and to the
# console, one `PASS name: detail` or `FAIL name: detail` each; other lines are indented notes.
set -uo pipefail

D=/root/device-test
RESULTS=$D/results.log
UNIT=realtime-voiced.service
BUS_NAME=io.thrive.RealtimeVoice1
BUS_PATH=/io/thrive/RealtimeVoice1
SIM_PORT=18080
QUESTION_TEXT="what is the weather like in paris today"
# A fake key, easy to find: it must appear nowhere in the journal.
KEY_MARK=FAKEKEY-3c9e1d
API_KEY="sk-devicetest-$KEY_MARK-0123456789"
CONTROLLER=alice # in the group realtime-voice
STRANGER=bob     # not in it
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

say() {
    printf '%s\n' "$*" >>"$RESULTS"
    printf '%s\n' "$*" >/dev/console 2>/dev/null || true
}
pass() { say "PASS $1: $2"; }
fail() { say "FAIL $1: $2"; }
note() { say "     $*"; }
# check NAME DETAIL-IF-PASSED DETAIL-IF-FAILED CONDITION…
check() {
    local name=$1 ok=$2 ko=$3
    shift 3
    if "$@"; then pass "$name" "$ok"; else fail "$name" "$ko"; fi
}
# wait_for SECONDS COMMAND…: true as soon as COMMAND succeeds, false after SECONDS.
wait_for() {
    local limit=$1 start=$SECONDS
    shift
    until "$@"; do
        [ $((SECONDS - start)) -lt "$limit" ] || return 1
        sleep 0.5
    done
}
now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

prop() { systemctl show -p "$1" --value "$UNIT"; }
bus() { timeout 20 busctl --system "$@"; }
as_user() {
    local user=$1
    shift
    timeout 20 setpriv --reuid="$user" --regid="$user" --init-groups "$@"
}
call_as() {
    local user=$1
    shift
    as_user "$user" busctl --system call "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" "$@"
}
bus_state() { bus get-property "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" State 2>/dev/null | tr -d '"' | awk '{print $2}'; }
state_is() { [ "$(bus_state)" = "$1" ]; }
journal_has() { journalctl -b -u "$UNIT" -o cat --no-pager | grep -qF -- "$1"; }

# --- boot 1 --------------------------------------------------------------------------------------
phase1() {
    note "boot 1: $(uname -srm), $(systemctl --version | head -n 1)"

    # The sound card: snd-aloop, loaded at every boot as a device's driver would be.
    echo snd-aloop >/etc/modules-load.d/device-test-snd-aloop.conf
    modprobe snd-aloop
    wait_for 20 test -e /proc/asound/Loopback
    check sound-card "$(grep -m1 Loopback /proc/asound/cards | sed 's/^ *//; s/  */ /g')" \
        "no Loopback card after modprobe snd-aloop" test -e /proc/asound/Loopback

    # Install, as a user would; the guest has no network, so every dependency must be there.
    local deb t0 out
    deb=$(ls "$D"/realtime-voiced_*.deb)
    t0=$(now)
    if out=$(apt-get install -y "$deb" 2>&1); then
        pass install "apt install ./$(basename "$deb") in $(elapsed "$t0") s, no network; $(dpkg-query -W -f='${Package} ${Version} ${Status}' realtime-voiced)"
    else
        fail install "apt install failed: $(tail -n 5 <<<"$out" | tr '\n' ' ')"
    fi
    grep -q "systemctl enable --now realtime-voiced" <<<"$out" || note "postinst did not print how to enable the service"

    # The key (the package created the file empty, mode 600) and a configuration for this device.
    printf '%s\n' "$API_KEY" >/etc/realtime-voiced/api-key
    cat >/etc/realtime-voiced/config.toml <<CONF
# Device test: the simulator on this machine, the Loopback card as microphone and speaker.
[api]
base_url = "http://127.0.0.1:$SIM_PORT/v1"

[session]
idle_timeout_s = 60

[transport]
allow_loopback = true

[audio]
# What a player writes to hw:Loopback,0,0 is captured here.
capture_device = "hw:Loopback,1,0"
# What is played here is captured from hw:Loopback,0,1.
playback_device = "hw:Loopback,1,1"
volume = 0.8

[log]
transcripts = true
CONF
    out=$(realtime-voiced check-config --config /etc/realtime-voiced/config.toml 2>&1) ||
        note "check-config: $out"
    check_audio_cli

    # The simulator stands in for the service, on 127.0.0.1 in the guest (which has no network).
    chmod 755 "$D/realtime-sim"
    systemd-run --quiet --unit=realtime-sim -p StandardOutput=journal "$D/realtime-sim" \
        --port "$SIM_PORT" --reply tone --transcript "$QUESTION_TEXT"
    wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SIM_PORT" 2>/dev/null ||
        note "the simulator does not listen on 127.0.0.1:$SIM_PORT"

    t0=$(now)
    systemctl enable --now "$UNIT" >/dev/null 2>&1 || note "systemctl enable --now failed"
    local shown
    wait_for 60 bash -c "[ \"\$(systemctl show -p StatusText --value $UNIT)\" = idle ]"
    shown=$(systemctl show -p ActiveState,SubState,StatusText,Type,NRestarts "$UNIT" | tr '\n' ' ')
    check unit-ready "$shown(enable --now took $(elapsed "$t0") s)" "$shown" \
        bash -c "[ \"$(prop ActiveState)/$(prop SubState)/$(prop StatusText)\" = active/running/idle ]"
    # libopus on 32-bit ARM reads /proc/cpuinfo for NEON: the sandbox must leave it there.
    local cpus
    cpus=$(nsenter -t "$(prop MainPID)" -m -- grep -c '^processor' /proc/cpuinfo 2>&1)
    check sandbox-cpuinfo "/proc/cpuinfo inside the service's mount namespace: $cpus processors" \
        "/proc/cpuinfo inside the service's mount namespace: ${cpus:-nothing}" \
        bash -c "[ \"\$1\" -ge 1 ] 2>/dev/null" _ "$cpus"

    # The system bus, with the package's policy.
    useradd -m -G realtime-voice "$CONTROLLER"
    useradd -m "$STRANGER"
    out=$(as_user "$STRANGER" busctl --system introspect "$BUS_NAME" "$BUS_PATH" 2>&1)
    check bus-introspect "busctl --system introspect (as $STRANGER) lists $BUS_NAME with $(grep -c '^\.' <<<"$out") members" \
        "$(head -n 3 <<<"$out" | tr '\n' ' ')" \
        bash -c "grep -q '^$BUS_NAME *interface' <<<\"\$1\" && grep -q '^\.Start *method' <<<\"\$1\"" _ "$out"
    out=$(call_as "$STRANGER" Start 2>&1)
    check bus-start-denied "$STRANGER (not in realtime-voice): $out" "$STRANGER was not refused: ${out:-no error}" \
        bash -c "grep -q 'Rejected send message\|Access denied\|AccessDenied' <<<\"\$1\" && [ \"$(bus_state)\" = idle ]" _ "$out"
    self_check_over_bus

    t0=$(now)
    out=$(call_as "$CONTROLLER" Start 2>&1)
    wait_for 30 state_is listening
    check bus-start "$CONTROLLER (in realtime-voice): Start → State=$(bus_state) in $(elapsed "$t0") s, transport $(bus get-property "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" Transport | awk '{print $2}')" \
        "Start as $CONTROLLER: ${out:-ok}, State=$(bus_state)" state_is listening

    conversation
    latency_check
    journal_checks
    reload_check
    watchdog_check

    journalctl -b --no-pager >"$D/journal-boot1.txt" 2>&1
    echo 2 >"$D/phase"
    note "rebooting"
    sync
    systemctl reboot
}

# The room: what the speaker side of the card plays comes back into its microphone side, as a
# speaker heard by a microphone beside it (alsaloop bridges the card's two other ends).
room_on() {
    alsaloop -C hw:Loopback,0,1 -P hw:Loopback,0,0 -f S16_LE -r 48000 -c 1 -t 40000 \
        >"$D/alsaloop.log" 2>&1 &
    ROOM=$!
    sleep 1
}
room_off() {
    kill "$ROOM" 2>/dev/null
    wait "$ROOM" 2>/dev/null
    [ ! -s "$D/alsaloop.log" ] || note "alsaloop: $(tail -n 2 "$D/alsaloop.log" | tr '\n' ' ')"
}

# `realtime-voiced check-audio` as the install steps have it, before the service runs.
check_audio_cli() {
    local out rc t0
    room_on
    t0=$(now)
    out=$(timeout 120 realtime-voiced check-audio 2>&1)
    rc=$?
    room_off
    sed 's/^/     check-audio: /' <<<"$out" >>"$RESULTS"
    # Passes when the check runs through on the card and says what it found; whether the
    # emulated room's echo is found and cancelled is noted, not judged (TCG starves alsaloop).
    check check-audio "exit $rc in $(elapsed "$t0") s; $(grep -m1 'hw:CARD=Loopback' <<<"$out" | sed 's/^ *//'); $(grep 'speaker to microphone\|canceller removes\|^Result' <<<"$out" | sed 's/^ *//' | tr '\n' ';')" \
        "exit $rc: $(tail -n 3 <<<"$out" | tr '\n' '|')" \
        bash -c "grep -q 'hw:CARD=Loopback.*\[Loopback\]' <<<\"\$1\" && grep -q '^Result: ' <<<\"\$1\"" _ "$out"
}

# The self-check over the system bus with the service running and idle.
self_check_over_bus() {
    local out pid busy
    pid=$(prop MainPID)
    out=$(call_as "$CONTROLLER" ListDevices 2>&1)
    check bus-list-devices "ListDevices (as $CONTROLLER): $(grep -o '"name" s "[^"]*"' <<<"$out" | wc -l) devices; hw:CARD=Loopback,DEV=1 held by \"$(grep -o 'pid [0-9]* ([^)]*)' <<<"$out" | sort -u | tr '\n' ' ')\"" \
        "ListDevices: ${out:0:300}" \
        bash -c "grep -q '\"name\" s \"hw:CARD=Loopback,DEV=1\"' <<<\"\$1\" && grep -q '\"card\" s \"Loopback\"' <<<\"\$1\" && grep -q 'pid $pid (realtime-voiced)' <<<\"\$1\"" _ "$out"
    busy=$(timeout 60 realtime-voiced check-audio 2>&1 >/dev/null)
    check check-audio-busy "check-audio while the service holds the card: \"$busy\"" "check-audio: ${busy:-no error}" \
        bash -c "grep -q 'busy.*held by pid $pid (realtime-voiced)' <<<\"\$1\"" _ "$busy"
    out=$(call_as "$CONTROLLER" TestSpeaker 2>&1)
    check bus-test-speaker "TestSpeaker: $out" "TestSpeaker: $out" test "$out" = "u 1000"
    room_on
    out=$(call_as "$CONTROLLER" CheckEcho 2>&1)
    room_off
    check bus-check-echo "CheckEcho: $(tr -s ' ' <<<"$out" | cut -c1-400); journal: \"$(journalctl -b -u "$UNIT" -o cat | grep -m1 'echo check:')\"" \
        "CheckEcho: ${out:0:300}" \
        bash -c "grep -q '\"verdict\" s ' <<<\"\$1\" && journalctl -b -u $UNIT -o cat | grep -q 'echo check: speaker-to-microphone delay'" _ "$out"
}

# A spoken question into the microphone side of the card, the answer from the speaker side.
conversation() {
    local rec t0 result attempt heard=0
    rm -f "$D/answer.raw"
    arecord -q -D hw:Loopback,0,1 -f S16_LE -r 48000 -c 1 -t raw -d 150 "$D/answer.raw" \
        2>"$D/arecord.err" &
    rec=$!
    t0=$(now)
    # Asked again (as a person would) only when the call was lost meanwhile: under emulation on a
    # busy host the guest can stall long enough for the daemon to call the media path lost.
    count() { journalctl -b -u "$UNIT" -o cat --no-pager | grep -cF -- "$1"; }
    # The daemon's lines from the last time it heard the question on.
    after_question() {
        journalctl -b -u "$UNIT" -o cat --no-pager |
            awk -v q="transcript: $QUESTION_TEXT" 'index($0, q) { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }'
    }
    heard_again() { [ "$(count "transcript: $QUESTION_TEXT")" -gt "$heard_before" ]; }
    answer_spoken() { after_question | grep -q 'state=speaking'; }
    answer_done() { after_question | sed -n '/state=speaking/,$p' | grep -q 'state=listening\|state=reconnecting'; }
    local lost heard_before
    for attempt in 1 2 3; do
        lost=$(count "connection lost")
        heard_before=$(count "transcript: $QUESTION_TEXT")
        wait_for 30 state_is listening
        # The session is configured just after `listening`: speak a moment later, as a person would.
        sleep 2
        aplay -q -D hw:Loopback,0,0 "$D/question.wav" 2>"$D/aplay.err" || note "aplay: $(cat "$D/aplay.err")"
        note "question played (attempt $attempt) at +$(elapsed "$t0") s"
        if wait_for 30 heard_again; then
            heard=$attempt
            # The answer is spoken (state speaking), then the daemon listens again.
            wait_for 40 answer_spoken && wait_for 40 answer_done
        fi
        [ "$(count "connection lost")" -gt "$lost" ] || break
        note "the call was lost and reconnected meanwhile: $(journalctl -b -u "$UNIT" -o cat | grep 'connection lost' | tail -n 1)"
    done
    check conversation-heard "the simulator transcribed: \"$(journalctl -b -u "$UNIT" -o cat | grep -m1 -F "transcript: $QUESTION_TEXT" | sed 's/^transcript: //; s/ role=user$//')\" (question $heard)" \
        "no user transcript in the journal after $(elapsed "$t0") s: $(journalctl -b -u "$UNIT" -o cat | tail -n 5 | tr '\n' '|')" \
        journal_has "transcript: $QUESTION_TEXT"
    sleep 1
    kill -INT "$rec" 2>/dev/null
    wait "$rec" 2>/dev/null
    [ ! -s "$D/arecord.err" ] || note "arecord: $(cat "$D/arecord.err")"
    # 50 ms blocks; a block is the answer's tone when 660 Hz holds most of its energy.
    result=$(od -An -v -td2 -w2 "$D/answer.raw" | awk -v f=660 -v rate=48000 -v n=2400 '
        BEGIN { c = 2 * cos(2 * atan2(0, -1) * f / rate) }
        {
            x = $1; s = x + c * s1 - s2; s2 = s1; s1 = s; e += x * x; k++
            if (k == n) {
                p = s1 * s1 + s2 * s2 - c * s1 * s2
                rms = sqrt(e / n); r = e > 0 ? p / (n * e / 2) : 0
                blocks++
                if (rms > peak) peak = rms
                if (rms > 200 && r > 0.5) { tone++; if (!first) first = blocks }
                s1 = s2 = e = k = 0
            }
        }
        END { printf "%d %d %.0f %.2f\n", tone, blocks, peak, first * n / rate }')
    local tone blocks peak first
    read -r tone blocks peak first <<<"$result"
    check conversation-answer \
        "recorded from hw:Loopback,0,1: 660 Hz for $((tone * 50)) ms of $((blocks * 50)) ms (from $first s), peak RMS $peak" \
        "recorded from hw:Loopback,0,1: 660 Hz for $((tone * 50)) ms of $((blocks * 50)) ms, peak RMS $peak" \
        test "$tone" -ge 10
}

# The delay the daemon adds each way (`Stats`, since start) on a card with a clock of its own
# and no sound server in between, as on the device: the benches here have only PulseAudio's
# clock, which adds its own buffering, or clock-less plugins. Figures are reported, not judged:
# under emulation a late wake-up is the host's, not the daemon's.
latency_check() {
    local stats m mp w wp
    stats=$(bus get-property "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" Stats 2>&1)
    stat_of() { grep -o "\"$1\" [a-z] [0-9.]*" <<<"$stats" | awk '{print $3}'; }
    m=$(stat_of mic_to_wire_ms) mp=$(stat_of mic_to_wire_p95_ms)
    w=$(stat_of wire_to_speaker_ms) wp=$(stat_of wire_to_speaker_p95_ms)
    check device-latency \
        "on hw:Loopback ($(systemd-detect-virt 2>/dev/null || echo native)): mic -> wire $m ms (p95 $mp), wire -> speaker $w ms (p95 $wp), together $((m + w)) ms; playback underruns $(stat_of playback_underruns), xruns $(stat_of capture_xruns)/$(stat_of playback_xruns), jitter buffer cut $(stat_of playback_shed_ms) ms" \
        "Stats has no delay figures: ${stats:0:300}" \
        test -n "$m" -a -n "$w"
}

journal_checks() {
    local json=$D/journal.json n native stdout
    journalctl -b -u "$UNIT" -o json --no-pager >"$json"
    n=$(wc -l <"$json")
    native=$(grep -c '"_TRANSPORT":"journal"' "$json")
    stdout=$(grep -c '"_TRANSPORT":"stdout"' "$json")
    local state transcript
    state=$(grep '"MESSAGE":"state changed state=listening"' "$json" | grep '"F_STATE":"listening"' |
        grep '"PRIORITY":"5"' | grep '"SYSLOG_IDENTIFIER":"realtime-voiced"' | grep -c '"CODE_FILE":"')
    transcript=$(grep -F "\"MESSAGE\":\"transcript: $QUESTION_TEXT role=user\"" "$json" | grep -c '"F_ROLE":"user"')
    check journal-fields \
        "$native of $n entries sent natively (_TRANSPORT=journal, $stdout on stdout); \"state changed state=listening\" with PRIORITY=5 F_STATE CODE_FILE; \"transcript: … role=user\" with F_ROLE" \
        "native $native of $n, stdout $stdout, state entries $state, transcript entries $transcript" \
        test "$native" -gt 0 -a "$state" -gt 0 -a "$transcript" -gt 0
    note "journal: $(journalctl -b -u "$UNIT" -o short-monotonic --no-pager | grep -m1 'state changed state=listening')"
    local noise warnings
    noise=$(journalctl -b -u "$UNIT" -o cat --no-pager | grep -ci 'password is empty\|stun')
    warnings=$(journalctl -b -u "$UNIT" -p warning -o cat --no-pager | grep -vc '^$')
    journalctl -b -u "$UNIT" -p warning -o cat --no-pager | head -n 5 | sed 's/^/     warning: /' >>"$RESULTS"
    check journal-quiet "no ICE \"password is empty\" or STUN lines; $warnings warning(s) in all" \
        "$noise ICE/STUN line(s): $(journalctl -b -u "$UNIT" -o cat | grep -i -m2 'password is empty\|stun' | tr '\n' '|')" \
        test "$noise" -eq 0
    local leaks
    leaks=$(journalctl -b -o export --no-pager | grep -ac "$KEY_MARK")
    check journal-no-secret "the key appears in none of this boot's $(journalctl -b -o export --no-pager | grep -ac '^__CURSOR=') journal entries" \
        "the key appears in $leaks journal entries" test "$leaks" -eq 0
}

reload_check() {
    local pid t0 vol
    pid=$(prop MainPID)
    sed -i 's/^volume = 0.8$/volume = 0.35/' /etc/realtime-voiced/config.toml
    t0=$(now)
    systemctl reload "$UNIT"
    wait_for 15 bash -c "busctl --system get-property $BUS_NAME $BUS_PATH $BUS_NAME Volume | grep -q '^d 0.35'"
    vol=$(bus get-property "$BUS_NAME" "$BUS_PATH" "$BUS_NAME" Volume)
    check reload "volume = 0.35 in config.toml, systemctl reload: Volume is \"$vol\" after $(elapsed "$t0") s, same process $pid, journal: \"$(journalctl -b -u "$UNIT" -o cat | grep -m1 'configuration reloaded')\"" \
        "Volume is \"$vol\", MainPID $pid → $(prop MainPID), $(prop ActiveState)" \
        bash -c "[ \"$vol\" = 'd 0.35' ] && [ \"$(prop MainPID)\" = $pid ] && [ \"$(prop ActiveState)\" = active ]"
}

watchdog_check() {
    local pid t0 wd restarted=0 fired new
    pid=$(prop MainPID)
    wd=$(prop WatchdogUSec)
    t0=$EPOCHREALTIME
    kill -STOP "$pid"
    new_pid() {
        local p
        p=$(prop MainPID)
        [ "$p" != 0 ] && [ "$p" != "$pid" ] && [ "$(prop ActiveState)" = active ] &&
            [ "$(prop StatusText)" = idle ]
    }
    wait_for 120 new_pid && restarted=1
    new=$(prop MainPID)
    local t1=$EPOCHREALTIME
    fired=$(journalctl -b -u "$UNIT" -o short-unix --no-pager | grep -m1 'Watchdog timeout' | awk '{print $1}')
    local fired_after killed
    fired_after=$(awk -v a="$t0" -v b="${fired:-0}" 'BEGIN { printf "%.1f", b - a }')
    killed=$(journalctl -b -u "$UNIT" -o cat --no-pager | grep -m1 'Killing process\|Main process exited' || true)
    local limit
    limit=$(($(sed 's/s$//; s/min/*60/' <<<"$wd") + 2))
    check watchdog \
        "kill -STOP $pid: watchdog fired after ${fired_after} s (WatchdogSec=$wd), \"$killed\"; new process $new ready after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, NRestarts=$(prop NRestarts)" \
        "kill -STOP $pid: watchdog line at ${fired:-never} (+$fired_after s), restarted=$restarted, MainPID=$new, $(prop ActiveState)/$(prop StatusText)" \
        bash -c "[ $restarted = 1 ] && [ -n '$fired' ] && awk 'BEGIN { exit !($fired_after <= $limit) }'"
}

# --- boot 2 --------------------------------------------------------------------------------------
phase2() {
    note "boot 2: $(uptime -p)"
    wait_for 60 bash -c "[ \"\$(systemctl show -p StatusText --value $UNIT)\" = idle ]"
    local shown
    shown=$(systemctl show -p ActiveState,SubState,StatusText,UnitFileState "$UNIT" | tr '\n' ' ')
    check reboot "after a reboot: $shown" "after a reboot: $shown" \
        bash -c "[ \"$(prop UnitFileState)/$(prop ActiveState)/$(prop StatusText)\" = enabled/active/idle ]"

    local pid t0 left
    pid=$(prop MainPID)
    t0=$(now)
    systemctl stop "$UNIT"
    local took
    took=$(elapsed "$t0")
    left=$(pgrep -u realtime-voiced | tr '\n' ' ')
    local cg
    cg=$(find /sys/fs/cgroup/system.slice/realtime-voiced.service -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')
    check stop "systemctl stop took $took s: $(prop ActiveState), no process of user realtime-voiced, pid $pid gone" \
        "after systemctl stop: $(prop ActiveState), processes: ${left}${cg}" \
        bash -c "[ -z '$left' ] && [ -z '$cg' ] && ! kill -0 $pid 2>/dev/null && [ \"$(prop ActiveState)\" = inactive ]"

    local sec exposure
    sec=$(systemd-analyze security --no-pager "$UNIT" 2>&1)
    exposure=$(grep -o 'Overall exposure level for [^:]*: [0-9.]* [A-Z]*' <<<"$sec" | sed 's/.*: //')
    grep -E '^✗' <<<"$sec" | sort -t ' ' -k 1 | head -n 40 >"$D/security.txt"
    check security "systemd-analyze security realtime-voiced in the guest: ${exposure}" \
        "systemd-analyze security: ${exposure:-$(tail -n 2 <<<"$sec")}" \
        awk -v e="${exposure%% *}" 'BEGIN { exit !(e != "" && e + 0 <= 3.0) }'

    local t1 out since
    since=$(date +%s)
    sleep 1
    t1=$(now)
    out=$(apt-get purge -y realtime-voiced 2>&1) || note "apt purge: $(tail -n 3 <<<"$out")"
    local gone=() still=()
    getent passwd realtime-voiced >/dev/null && still+=("user realtime-voiced") || gone+=(user)
    getent group realtime-voiced >/dev/null && still+=("group realtime-voiced") || gone+=("group realtime-voiced")
    getent group realtime-voice >/dev/null && still+=("group realtime-voice") || gone+=("group realtime-voice")
    local p
    for p in /var/lib/realtime-voiced /var/lib/private/realtime-voiced /etc/realtime-voiced \
        /usr/share/dbus-1/system.d/io.thrive.RealtimeVoice1.conf /lib/systemd/system/$UNIT \
        /etc/systemd/system/multi-user.target.wants/$UNIT /usr/bin/realtime-voiced; do
        if [ -e "$p" ] || [ -L "$p" ]; then still+=("$p"); else gone+=("$p"); fi
    done
    dpkg-query -W -f='${Status}' realtime-voiced 2>/dev/null | grep -q installed && still+=("the dpkg record")
    check purge "apt purge in $(elapsed "$t1") s removed: ${gone[*]}" "apt purge left: ${still[*]}" \
        test ${#still[@]} -eq 0
    local names complaints
    names=$(bus call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ListNames 2>&1)
    complaints=$(journalctl -u dbus --since "@$since" -o cat --no-pager | grep -i 'unknown\|fail\|error' | head -n 3 | tr '\n' '|')
    check purge-bus "the system bus works after purge: $(prop ActiveState >/dev/null; systemctl is-active dbus), ListNames answers ($(grep -o '"' <<<"$names" | wc -l | awk '{print $1/2}') names), $BUS_NAME $(grep -q "$BUS_NAME" <<<"$names" && echo present || echo absent), no complaints from dbus" \
        "dbus $(systemctl is-active dbus): ${names:0:200} ${complaints}" \
        bash -c "systemctl is-active -q dbus && grep -q '^as ' <<<\"\$1\" && ! grep -q '$BUS_NAME' <<<\"\$1\" && [ -z '$complaints' ]" _ "$names"

    journalctl -b --no-pager >"$D/journal-boot2.txt" 2>&1
    echo "done" >"$D/phase"
    note "powering off"
    sync
    systemctl poweroff
}

case "$(cat "$D/phase" 2>/dev/null || echo 1)" in
    1) phase1 ;;
    2) phase2 ;;
    *)
        note "nothing left to do: powering off"
        systemctl poweroff
        ;;
esac
