//! The audio self-check through the built binary and real alsa-lib, PulseAudio's null sink
//! standing in for the room: what the speaker plays comes back on the microphone (its monitor)
//! a few tens of ms later, at full level.
//!
//! `check-audio` on the command line, and `ListDevices`, `TestSpeaker` and `CheckEcho` over
//! D-Bus with the daemon running (refused during a conversation; a start waits for the check).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::audio_rig::{Asoundrc, Pulse, Slave};
use testkit::bus::Bus;
use testkit::proc::{have, text};
use testkit::signals::{goertzel, read_raw, rms};
use testkit::sim::SimProcess;
use testkit::{wait_for, Proc};

use crate::DAEMON;

fn ready() -> Result<(), String> {
    if !testkit::proc::is_root() {
        return Err("needs root (PulseAudio's null sink as configured here)".into());
    }
    for program in ["pulseaudio", "pactl", "dbus-daemon", "busctl"] {
        if !have(program) {
            return Err(format!(
                "{program} is not installed (tests/run-tests.sh installs it)"
            ));
        }
    }
    Ok(())
}

/// `mic` hears the null sink; `speaker` plays into it and records every sample to `played`.
fn room(dir: &Path, pulse: &Pulse) -> String {
    Asoundrc::new()
        .device("mic", Slave::PulseMonitor(pulse))
        .writes_file("speaker", Slave::PulseSink(pulse), &dir.join("played.raw"))
        .write(dir)
}

fn check_audio(dir: &Path, alsa: &str, audio: &str) -> Output {
    let config = dir.join("check.toml");
    std::fs::write(&config, format!("[audio]\n{audio}\n")).expect("config");
    Command::new("timeout")
        .args(["60", DAEMON, "--config"])
        .arg(&config)
        .arg("check-audio")
        .env("ALSA_CONFIG_PATH", alsa)
        .output()
        .expect("run check-audio")
}

/// The number after `label` in `out`, up to the next space.
fn figure(out: &str, label: &str) -> f64 {
    out.split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` figure in: {out}"))
}

/// The tone in what was played: one second of 440 Hz at the volume.
fn assert_tone_played(played: &[i16], volume: f64) {
    let start = played
        .iter()
        .position(|&s| s.unsigned_abs() > 1000)
        .expect("something was played");
    let tone = &played[start..start + 48_000 * 9 / 10];
    let level = rms(tone);
    let want = 8_000.0 * volume / 2f64.sqrt();
    assert!(
        (level - want).abs() / want < 0.1,
        "tone at rms {level:.0}, want {want:.0}"
    );
    assert!(
        goertzel(tone, 440.0) > 10.0 * goertzel(tone, 880.0),
        "not a 440 Hz tone"
    );
}

#[test]
fn check_audio_lists_the_devices_plays_a_tone_and_measures_the_echo() {
    if let Err(why) = ready() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pulse = Pulse::start(dir.path());
    let alsa = room(dir.path(), &pulse);

    let o = check_audio(
        dir.path(),
        &alsa,
        "capture_device = \"mic\"\nplayback_device = \"speaker\"\nvolume = 0.5",
    );
    let out = text(&o);
    eprintln!("{out}");
    assert!(o.status.success(), "check-audio: {out}");
    assert!(
        out.contains("mic  <- configured for capture")
            && out.contains("speaker  <- configured for playback"),
        "{out}"
    );
    let delay = figure(&out, "speaker to microphone: ");
    let removed = figure(&out, "the echo canceller removes ");
    eprintln!("check-audio: speaker to microphone {delay} ms, canceller removes {removed} dB");
    assert!(delay > 0.0 && delay < 300.0, "{out}");
    assert!(removed > 15.0, "{out}");
    assert!(out.contains("Result: fine"), "{out}");
    assert_tone_played(&read_raw(&dir.path().join("played.raw")), 0.5);

    // Without the canceller the check says so, and fails.
    let o = check_audio(
        dir.path(),
        &alsa,
        "capture_device = \"mic\"\nplayback_device = \"speaker\"\necho_cancellation = false",
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("echo cancellation is off"), "{out}");

    // A device that is not there: one line naming it, status 1.
    let o = check_audio(
        dir.path(),
        &alsa,
        "capture_device = \"no_such_mic\"\nplayback_device = \"speaker\"",
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("cannot open capture device `no_such_mic`"),
        "{err}"
    );
}

fn config(dir: &Path, sim: &SimProcess) -> std::path::PathBuf {
    let path = dir.join("daemon.toml");
    let text = format!(
        r#"
[api]
base_url = "{}"

[transport]
kind = "websocket"
allow_loopback = true
connect_timeout_ms = 5000

[audio]
capture_device = "mic"
playback_device = "speaker"
volume = 0.5

[dbus]
bus = "session"
"#,
        sim.base_url()
    );
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn the_self_check_over_dbus() {
    if let Err(why) = ready() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bus = Bus::session(d);
    let pulse = Pulse::start(d);
    let alsa = room(d, &pulse);
    let sim = SimProcess::start(d, 0, &[]);
    let log_path = d.join("daemon.log");
    let _daemon = Proc::spawn(
        Command::new(DAEMON)
            .arg("--config")
            .arg(config(d, &sim))
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("ALSA_CONFIG_PATH", &alsa)
            .env("OPENAI_API_KEY", "sk-selfcheck-test-key")
            .env("STATE_DIRECTORY", d.join("state"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log")),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for(Duration::from_secs(20), "the daemon on the bus", || {
        bus.property("State")
    });

    let o = bus.busctl(&[
        "--json=short",
        "call",
        testkit::bus::NAME,
        testkit::bus::PATH,
        testkit::bus::NAME,
        "ListDevices",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "ListDevices: {out}");
    let listed: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    let devices = listed["data"][0].as_array().expect("an array").clone();
    let configured = |name: &str| {
        devices
            .iter()
            .find(|d| d["name"]["data"] == name)
            .map(|d| d["configured"]["data"].clone())
    };
    assert_eq!(configured("mic"), Some("capture".into()), "{out}");
    // The daemon holds its own devices, and says so.
    let mic = devices.iter().find(|d| d["name"]["data"] == "mic");
    assert!(
        mic.is_some_and(|m| m["in_use_by"]["data"]
            .to_string()
            .contains("(realtime-voiced)")),
        "{out}"
    );
    assert_eq!(configured("speaker"), Some("playback".into()), "{out}");

    let o = bus.call("TestSpeaker", &[]);
    assert_eq!(text(&o).trim(), "u 1000", "{}", text(&o));
    let played = wait_for(Duration::from_secs(5), "the tone in the speaker", || {
        let played = read_raw(&d.join("played.raw"));
        let start = played.iter().position(|&s| s.unsigned_abs() > 1000)?;
        (played.len() > start + 48_000).then_some(played)
    });
    assert_tone_played(&played, 0.5);

    // A start while the echo check plays waits for it.
    let check = Command::new("timeout")
        .args([
            "15",
            "busctl",
            &format!("--address={}", bus.address),
            "--json=short",
            "--timeout=10",
        ])
        .args([
            "call",
            testkit::bus::NAME,
            testkit::bus::PATH,
            testkit::bus::NAME,
            "CheckEcho",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("busctl");
    wait_for(Duration::from_secs(10), "the echo check to begin", || {
        log()
            .contains("echo check: playing the chirp")
            .then_some(())
    });
    let o = bus.call("Start", &[]);
    let out = text(&o);
    assert!(
        !o.status.success() && out.contains("an echo check is running"),
        "Start during the check: {out}"
    );
    let o = check.wait_with_output().expect("CheckEcho");
    let out = text(&o);
    assert!(o.status.success(), "CheckEcho: {out}\n{}", log());
    let result: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    let r = &result["data"][0];
    let delay = r["delay_ms"]["data"].as_f64().expect("a delay");
    let removed = r["removed_db"]["data"].as_f64().expect("a reduction");
    eprintln!(
        "CheckEcho: delay {delay:.1} ms, canceller removes {removed:.1} dB, verdict {}",
        r["verdict"]["data"]
    );
    assert!(delay > 0.0 && delay < 300.0, "{r}");
    assert!(removed > 15.0, "{r}");
    assert_eq!(r["ok"]["data"], true, "{r}");
    assert!(
        r["echo_dbfs"]["data"].as_f64().is_some_and(|e| e > -40.0),
        "{r}"
    );
    assert!(
        log().contains("echo check: speaker-to-microphone delay"),
        "logged: {}",
        log()
    );

    // During a conversation the echo check is refused, in one line.
    let o = bus.call("Start", &[]);
    assert!(o.status.success(), "Start: {}\n{}", text(&o), log());
    bus.wait_state("listening", Duration::from_secs(15));
    let o = bus.call("CheckEcho", &[]);
    let out = text(&o);
    assert!(
        !o.status.success() && out.contains("a conversation is running"),
        "{out}"
    );
    let o = bus.call("Stop", &[]);
    assert!(o.status.success(), "Stop: {}", text(&o));
}
