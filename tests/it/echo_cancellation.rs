//! The speaker does not talk to itself: what it plays comes back on the microphone through
//! real alsa-lib (PulseAudio's null sink and its monitor), and the canceller, fed what playback
//! wrote, removes it. Runs in a child process as `audio_alsa` explains.

use std::time::Duration;

use realtime_voiced::audio::engine::{Engine, EngineOptions};
use realtime_voiced::audio::signals::speech_like;
use realtime_voiced::audio::{AudioControl, Speaker};
use testkit::audio_rig::Pulse;

use crate::audio_alsa::{audio_config, child_dir, count_frames, pulse_devices, run_child, runtime};

#[test]
fn the_speaker_does_not_talk_to_itself_through_alsa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pulse = Pulse::start(dir.path());
    pulse_devices(dir.path(), &pulse);
    run_child(
        (module_path!(), "child_echo_loop"),
        dir.path(),
        Duration::from_secs(90),
    );
}

/// Plays 10 s of speech-like sound and measures what the microphone hears from 6 s to 9 s.
fn echo_energy(aec: bool) -> f64 {
    let mut cfg = audio_config("src", "sink");
    cfg.echo_cancellation = aec;
    cfg.noise_suppression = false;
    let engine = Engine::start_with(
        &cfg,
        EngineOptions {
            mic_frames: 1000,
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    let mic = engine.microphone();
    let rt = runtime();
    // Let a paced device start, then listen.
    count_frames(&rt, &mic, Duration::from_secs(2));
    engine.set_capture(true);
    engine.push(&speech_like(48_000 * 10, 5, false));
    let heard = rt.block_on(async {
        let mut rx = mic.lock().await;
        let mut heard = Vec::new();
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Some(frame)) = tokio::time::timeout_at(end, rx.recv()).await {
            heard.extend_from_slice(&frame);
        }
        heard
    });
    assert!(
        heard.len() > 48_000 * 9,
        "only {} samples heard",
        heard.len()
    );
    let tail = &heard[48_000 * 6..48_000 * 9];
    tail.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() + 1.0
}

#[test]
fn child_echo_loop() {
    let Some(_dir) = child_dir() else { return };
    let plain = echo_energy(false);
    let cancelled = echo_energy(true);
    let db = 10.0 * (plain / cancelled).log10();
    eprintln!("child: speaker → null sink monitor → microphone: echo reduced by {db:.1} dB");
    assert!(db > 15.0, "echo reduced by only {db:.1} dB");
}
