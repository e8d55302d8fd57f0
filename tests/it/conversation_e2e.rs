//! A whole conversation through the built binaries, as a person with the speaker has it: a
//! private D-Bus, the realtime simulator over WebRTC, ALSA reading spoken words (espeak-ng) into
//! the microphone and writing the speaker to a file, paced in real time by PulseAudio.
//!
//! Start over D-Bus → listening; the spoken question comes back as a user Transcript; the model
//! calls a command tool; the answer plays (audio in the speaker file) with an assistant
//! Transcript; speaking over the answer cancels it (barge-in); silence ends the session (idle
//! timeout); a killed and restarted simulator is survived (reconnecting → listening).
//!
//! Once per protocol and transport: the Realtime API and GPT-Live, each over WebRTC and
//! WebSocket. GPT-Live differs where the API does: the session starts with `session.start` (or
//! the create request), the tool belongs to its Responses backend, and on barge-in the model
//! stops by itself (no cancel, clear or truncate is sent).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::audio_rig::{Asoundrc, Pulse, Slave};
use testkit::bus::Bus;
use testkit::proc::have;
use testkit::signals::{ms, read_raw, rms, silence, speech, write_raw};
use testkit::sim::SimProcess;
use testkit::{wait_for, Proc};

use crate::DAEMON;

fn ready() -> Result<(), String> {
    if !testkit::proc::is_root() {
        return Err("needs root (PulseAudio's null sink as configured here)".into());
    }
    for program in [
        "dbus-daemon",
        "dbus-monitor",
        "busctl",
        "pulseaudio",
        "espeak-ng",
        "sox",
    ] {
        if !have(program) {
            return Err(format!(
                "{program} is not installed (tests/run-tests.sh installs it)"
            ));
        }
    }
    Ok(())
}

fn daemon_config(
    dir: &Path,
    sim: &SimProcess,
    tool: &Path,
    protocol: &str,
    transport: &str,
    frame_ms: u32,
) -> std::path::PathBuf {
    let path = dir.join("daemon.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[api]
base_url = "{base}"
protocol = "{protocol}"

[session]
idle_timeout_s = 8

[[session.tools]]
name = "echo"
description = "Repeats text"

[[session.tools]]
name = "weather"
description = "Weather for a city"
command = ["{tool}"]
timeout_ms = 3000

[transport]
kind = "{transport}"
allow_loopback = true
ice_servers = []
connect_timeout_ms = 5000
reconnect_attempts = 30
reconnect_backoff_ms = 200
reconnect_backoff_max_ms = 1000

[audio]
capture_device = "rtv_mic"
playback_device = "rtv_speaker"
frame_ms = {frame_ms}

[dbus]
bus = "session"

[log]
level = "debug"
transcripts = true
"#,
            base = sim.base_url(),
            tool = tool.display(),
            transport = transport,
            protocol = protocol,
        ),
    )
    .expect("write config");
    path
}

#[test]
fn a_whole_conversation_over_webrtc() {
    conversation("realtime", "webrtc", 20);
}

/// The microphone in 10 ms frames (`audio.frame_ms`): the same conversation holds.
#[test]
fn a_whole_conversation_over_webrtc_in_10_ms_frames() {
    conversation("realtime", "webrtc", 10);
}

#[test]
fn a_whole_conversation_over_websocket() {
    conversation("realtime", "websocket", 20);
}

#[test]
fn a_whole_live_conversation_over_webrtc() {
    conversation("live", "webrtc", 20);
}

#[test]
fn a_whole_live_conversation_over_websocket() {
    conversation("live", "websocket", 20);
}

/// Every client event the simulator got was checked against OpenAI's published schema; none
/// fell outside it. Prints how many were checked.
fn assert_conformant(sim: &SimProcess, protocol: &str, transport: &str) {
    let stats = sim.stats();
    let checked = stats["schema_checked"].as_u64().unwrap_or(0);
    eprintln!(
        "{protocol} over {transport}: {checked} client events checked against the published schema, {} outside it",
        stats["schema_violations"]
    );
    assert!(checked > 0, "{stats}");
    assert_eq!(stats["schema_violations"], 0, "{stats}");
    assert_eq!(stats["truncates_refused"], 0, "{stats}");
}

fn conversation(protocol: &str, transport: &str, frame_ms: u32) {
    let live = protocol == "live";
    if let Err(why) = ready() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // RTV_E2E_KEEP=1 keeps the logs, audio and signals for a look after a failure.
    let d = if std::env::var_os("RTV_E2E_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("keeping {}", kept.display());
        Box::leak(Box::new(kept)).as_path()
    } else {
        dir.path()
    };

    // What the microphone hears: silence while the daemon starts, a question, a short pause,
    // a second utterance that lands while the answer plays, then silence.
    let question = speech(d, "What is the weather like in Paris today?");
    let interruption = speech(d, "Stop, stop. Tell me something else instead please.");
    let mut mic = silence(ms(2500));
    mic.extend_from_slice(&question);
    mic.extend(silence(ms(1800)));
    mic.extend_from_slice(&interruption);
    mic.extend(silence(ms(120_000)));
    let mic_raw = d.join("mic.raw");
    write_raw(&mic_raw, &mic);
    let speaker_raw = d.join("speaker.raw");

    let tool = d.join("weather-tool");
    let tool_seen = d.join("tool-input.json");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\ncat > {}\necho 'Sunny and 21 degrees'\n",
            tool_seen.display()
        ),
    )
    .expect("tool");
    let _ = Command::new("chmod").arg("+x").arg(&tool).status();

    let bus = Bus::session(d);
    let pulse = Pulse::start(d);
    let alsa = Asoundrc::new()
        .reads_file("rtv_mic", Slave::PulseMonitor(&pulse), &mic_raw)
        .writes_file("rtv_speaker", Slave::PulseSink(&pulse), &speaker_raw)
        .write(d);
    let sim = SimProcess::start(
        d,
        0,
        &[
            "--tool",
            "weather",
            "--transcript",
            "what is the weather like in Paris",
            // A service a network away: its detection plus the round trip. The device hears
            // the interruption itself first.
            "--speech-start-delay-ms",
            "700",
        ],
    );
    let port = sim.port;
    let config = daemon_config(d, &sim, &tool, protocol, transport, frame_ms);
    let signals = d.join("signals.txt");
    let _monitor = bus.monitor(&signals);
    let daemon_log = d.join("daemon.log");
    let mut daemon = Proc::spawn(
        Command::new(DAEMON)
            .args(["--config", config.to_str().expect("utf-8")])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("ALSA_CONFIG_PATH", &alsa)
            .env("OPENAI_API_KEY", "sk-e2e-test-key")
            .env("STATE_DIRECTORY", d.join("state"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&daemon_log).expect("log")),
    );
    let log = || std::fs::read_to_string(&daemon_log).unwrap_or_default();
    // A line some thread logs after what the test saw last (bounded wait).
    let log_line = |needle: &str| {
        wait_for(
            Duration::from_secs(5),
            testkit::wait::lazy(|| format!("a line with {needle:?}: {}", log())),
            || {
                log()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_owned)
            },
        )
    };
    let sim_log = |s: &SimProcess| s.logged();
    wait_for(Duration::from_secs(20), "the daemon on the bus", || {
        bus.property("State")
    });

    // Press: Start over D-Bus.
    let out = bus.call("Start", &[]);
    assert!(
        out.status.success(),
        "Start: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    bus.wait_state("listening", Duration::from_secs(15));

    // The question is heard, the tool runs, the answer plays with transcripts both ways.
    wait_for(Duration::from_secs(30), "an assistant transcript", || {
        let s = std::fs::read_to_string(&signals).unwrap_or_default();
        (s.contains("\"assistant\"")).then_some(())
    });
    let s = std::fs::read_to_string(&signals).unwrap_or_default();
    assert!(
        s.contains("\"user\"") && s.contains("what is the weather like in Paris"),
        "{s}"
    );
    let tool_input = std::fs::read_to_string(&tool_seen).expect("the command tool ran");
    assert!(
        serde_json::from_str::<serde_json::Value>(&tool_input).is_ok(),
        "tool got JSON: {tool_input}"
    );
    assert!(
        sim_log(&sim).contains("function_call_output"),
        "{}",
        sim_log(&sim)
    );

    // Barge-in: the second utterance started while the answer played. Realtime: WebRTC clears
    // the service's playout; WebSocket truncates the item to what was heard, which the
    // simulator accepts only if it is no more than the audio it sent. GPT-Live: the model
    // hears the user and stops by itself; the daemon sends nothing of the kind.
    wait_for(Duration::from_secs(20), "barge-in at the service", || {
        let l = sim_log(&sim);
        if live {
            return l.contains("the model stopped talking").then_some(());
        }
        let told = match transport {
            "webrtc" => l.contains("output_audio_buffer.clear"),
            _ => l.contains("truncated"),
        };
        (l.contains("response.cancel") && told).then_some(())
    });
    // The device heard the interruption itself and silenced the speaker: how long after the
    // voice began (its place in the microphone stream is known: it is our file).
    let onset_ms = (2500 + question.len() / 48 + 1800) as u64;
    // The playback thread logs it once it has silenced the device, which on a loaded
    // machine may come after the service has seen the cancel: wait for it, bounded.
    let hush = log_line("local barge-in: a voice at");
    let field =
        |name: &str| logged_number(&hush, name).unwrap_or_else(|| panic!("no {name} in {hush}"));
    let silent_ms = field("silent_ms");
    let time_to_silence = silent_ms.saturating_sub(onset_ms);
    // What the daemon itself reports: from where its detector placed the voice's onset.
    let detected_at = field("onset_ms");
    let reported = silent_ms.saturating_sub(detected_at);
    assert!(
        silent_ms > onset_ms,
        "silenced before the voice began? {silent_ms} vs {onset_ms}"
    );
    // The target is 150 ms (BENCHMARKS.md has the figures); a loaded CI machine adds its own
    // delays, so the test only guards against a regression to the service's pace.
    assert!(reported < 400, "{reported} ms to silence as reported");
    if detected_at > onset_ms + 150 {
        // A starved machine: the answer began to play after the user had begun to talk, and
        // the device heard them over it only then. Not a time to silence from the voice's start.
        eprintln!(
            "{protocol} over {transport}: local barge-in {} ms into the interruption (the answer was not playing when it began): speaker silent {reported} ms after the detected onset",
            detected_at - onset_ms
        );
    } else {
        eprintln!(
            "{protocol} over {transport}: local barge-in, speaker silent {time_to_silence} ms after the voice began ({reported} ms as the daemon reports it)"
        );
        assert!(time_to_silence < 400, "{time_to_silence} ms to silence");
    }
    if live {
        let l = sim_log(&sim);
        assert!(
            !l.contains("response.cancel") && !l.contains("truncat"),
            "GPT-Live has no cancel or truncate: {l}"
        );
        let opened = if transport == "websocket" {
            "event=session.start"
        } else {
            "live session started"
        };
        assert!(l.contains(opened), "{l}");
    }

    // The answer's audio reached the speaker file.
    let played = read_raw(&speaker_raw);
    let loud_frames = played.chunks(960).filter(|f| rms(f) > 300.0).count();
    assert!(
        loud_frames > 25,
        "only {loud_frames} audible 20 ms frames reached the speaker"
    );

    // Where the seconds went: one line per turn, timed to the speaker (never 0: the jitter
    // buffer and the device lie between the answer's arrival and its sound).
    let turn = log_line("turn: first audio at the speaker");
    eprintln!(
        "{protocol} over {transport}: {}",
        turn.split("INFO ").nth(1).unwrap_or(&turn)
    );
    let stats = bus.property("Stats").unwrap_or_default();
    let stat = |key: &str| testkit::bus::stat(&stats, key);
    let first_audio = stat("time_to_first_audio_ms").unwrap_or(0);
    assert!(first_audio > 0, "time_to_first_audio_ms reads 0");
    // What the daemon adds to the call's delay is measured both ways.
    assert!(
        stat("mic_to_wire_ms").is_some() && stat("wire_to_speaker_ms").is_some(),
        "no delays in Stats: {stats}"
    );
    // Answers that were talked over: their turn lines and Stats carry the times to silence
    // the engine logged (the interruption is long: it may cut more than one answer).
    let logged: Vec<u64> = log()
        .lines()
        .filter(|l| l.contains("local barge-in: a voice at"))
        .filter_map(|l| {
            Some(logged_number(l, "silent_ms")?.saturating_sub(logged_number(l, "onset_ms")?))
        })
        .collect();
    let in_turns: Vec<u64> = log()
        .lines()
        .filter(|l| l.contains("turn: "))
        .filter_map(|l| {
            l.split("talked over: speaker silent ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .collect();
    assert!(
        !in_turns.is_empty() && in_turns.iter().all(|t| logged.contains(t)),
        "turn lines {in_turns:?}, logged {logged:?}"
    );
    assert!(
        stat("time_to_silence_ms").is_some_and(|t| logged.contains(&t)),
        "{stats} vs {logged:?}"
    );
    assert!(stat("median_time_to_silence_ms").is_some(), "{stats}");

    // Silence: the idle timeout ends the session by itself.
    bus.wait_state("idle", Duration::from_secs(40));
    assert!(log().contains("IdleTimeout"), "{}", log());

    // Recovery: a new session, the service dies and comes back on the same port. Losing a
    // peer takes ICE several seconds to notice, so the idle timeout is lengthened first, by a
    // configuration reload (SIGHUP), which applies from the next session on; so do a new voice
    // and a new tool, which the service must be told of. A changed device needs a restart,
    // and the log says so.
    let configured = |s: &SimProcess| -> Vec<String> {
        sim_log(s)
            .lines()
            .filter(|l| l.contains("session configured"))
            .map(str::to_owned)
            .collect()
    };
    let before = configured(&sim);
    assert!(
        !before.is_empty()
            && before
                .iter()
                .all(|l| l.contains("alloy") && !l.contains("clock")),
        "{before:?}"
    );
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .replace(
            "idle_timeout_s = 8",
            "idle_timeout_s = 120\nvoice = \"verse\"",
        )
        .replace(
            "playback_device = \"rtv_speaker\"",
            "playback_device = \"rtv_speaker\"\nperiod_ms = 20",
        );
    std::fs::write(
        &config,
        format!(
            "{text}\n[[session.tools]]\nname = \"clock\"\ndescription = \"The time\"\ncommand = [\"{}\"]\n",
            tool.display()
        ),
    )
    .expect("config");
    daemon.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(5), "the reload", || {
        log().contains("configuration reloaded").then_some(())
    });
    assert!(
        log().contains("changes to [audio] devices and processing take effect at the next start"),
        "{}",
        log()
    );
    assert!(bus.call("Start", &[]).status.success());
    bus.wait_state("listening", Duration::from_secs(15));
    let after = configured(&sim);
    let newest = after.last().map(String::as_str).unwrap_or_default();
    assert!(
        after.len() > before.len()
            && newest.contains("verse")
            && newest.contains("echo,weather,clock"),
        "the reloaded voice and tools did not reach the service: {after:?}"
    );
    assert_conformant(&sim, protocol, transport);
    drop(sim);
    bus.wait_state("reconnecting", Duration::from_secs(20));
    let sim = SimProcess::start(d, port, &[]);
    bus.wait_state("listening", Duration::from_secs(20));
    assert!(bus.call("Stop", &[]).status.success());
    bus.wait_state("idle", Duration::from_secs(5));
    let stats = bus.property("Stats").unwrap_or_default();
    assert!(stats.contains("reconnects"), "{stats}");
    if live {
        // GPT-Live counts seconds, not tokens.
        let voice_ms = testkit::bus::stat(&stats, "voice_ms").unwrap_or(0);
        assert!(voice_ms > 0, "{stats}");
    }

    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("daemon exits");
    assert!(status.success(), "{}", log());
    assert!(!log().contains("panicked"), "{}", log());
    assert_conformant(&sim, protocol, transport);
    drop(sim);
}

/// The number a log line gives for `name` (`name=123`).
fn logged_number(line: &str, name: &str) -> Option<u64> {
    line.split(&format!("{name}="))
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
