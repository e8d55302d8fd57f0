//! `realtime-voiced check-audio`: the audio self-check without D-Bus, for a first install or a
//! device that will not start. Lists the sound devices, plays the test tone, runs the echo
//! check, and says in plain words what is wrong.

use std::io::Write;
use std::time::Duration;

use crate::audio::devices::{self, DeviceEntry};
use crate::audio::engine::{AudioError, Engine, EngineOptions};
use crate::audio::probe::EchoReport;
use crate::audio::AudioControl;
use crate::config::Config;
use crate::control::selfcheck;

/// How a check ended.
pub enum Outcome {
    /// Every check passed.
    Fine,
    /// The checks ran; something needs attention (said above).
    Attention,
}

fn say(out: &mut dyn Write, text: std::fmt::Arguments<'_>) {
    // Output to a closed pipe is not worth failing the check over.
    let _ = writeln!(out, "{text}");
}

pub fn print_devices(out: &mut dyn Write, list: &[DeviceEntry]) {
    say(out, format_args!("Sound devices (ALSA):"));
    for e in list {
        let configured = if e.configured.is_empty() {
            String::new()
        } else {
            format!("  <- configured for {}", e.configured)
        };
        let card = if e.card.is_empty() {
            String::new()
        } else {
            format!(" [{}]", e.card)
        };
        say(
            out,
            format_args!("  {:<9} {}{card}{configured}", e.direction, e.name),
        );
        if !e.in_use_by.is_empty() {
            say(
                out,
                format_args!("            in use by {}", e.in_use_by.join(", ")),
            );
        }
    }
}

/// Why the engine could not start, with who holds a busy device.
fn explain(error: &AudioError, config: &Config) -> String {
    let text = error.to_string();
    if !text.contains("busy") {
        return text;
    }
    let audio = &config.audio;
    let holders = [
        (audio.capture_device.as_str(), true),
        (audio.playback_device.as_str(), false),
    ]
    .into_iter()
    .filter(|(name, _)| text.contains(&format!("`{name}`")))
    .find_map(|(name, capture)| devices::holders(name, capture));
    match holders {
        Some(who) => format!(
            "{text}; held by {who} (if that is realtime-voiced, stop it with `systemctl stop realtime-voiced` or ask it: `busctl call io.thrive.RealtimeVoice1 /io/thrive/RealtimeVoice1 io.thrive.RealtimeVoice1 CheckEcho`)"
        ),
        None => text,
    }
}

pub fn run(config: &Config, out: &mut dyn Write) -> Result<Outcome, String> {
    let audio = &config.audio;
    let list = devices::list(&audio.capture_device, &audio.playback_device);
    print_devices(out, &list);
    say(
        out,
        format_args!(
            "Microphone: {}   Speaker: {}   Volume: {:.2}",
            audio.capture_device, audio.playback_device, audio.volume
        ),
    );
    let engine =
        Engine::start_with(audio, EngineOptions::default()).map_err(|e| explain(&e, config))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Let both streams start before anything is measured.
    std::thread::sleep(Duration::from_millis(300));

    let ms = engine.test_speaker()?;
    say(
        out,
        format_args!("Playing a {ms} ms test tone (440 Hz) on the speaker…"),
    );
    std::thread::sleep(Duration::from_millis(u64::from(ms) + 300));

    say(
        out,
        format_args!("Checking the echo: a two-second chirp, recorded by the microphone…"),
    );
    let recording = engine.echo_probe()?;
    let report = runtime.block_on(selfcheck::read_recording(recording))?;
    selfcheck::log_report(&report);
    print_report(out, &report);
    if let Some(problem) = engine.stats().device_problem {
        return Err(problem);
    }
    Ok(if report.ok {
        Outcome::Fine
    } else {
        Outcome::Attention
    })
}

fn print_report(out: &mut dyn Write, r: &EchoReport) {
    match r.delay_ms {
        Some(d) => say(out, format_args!("  speaker to microphone: {d:.1} ms")),
        None => say(out, format_args!("  speaker to microphone: not heard")),
    }
    say(
        out,
        format_args!(
            "  played at {:.1} dBFS, heard at {:.1} dBFS",
            r.played_dbfs, r.echo_dbfs
        ),
    );
    if let Some(removed) = r.removed_db {
        say(
            out,
            format_args!("  the echo canceller removes {removed:.1} dB"),
        );
    }
    say(out, format_args!("Result: {}", r.verdict));
}
