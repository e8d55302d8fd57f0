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
            heard.extend_from_slice(frame.samples());
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

/// Local barge-in hears the user, not the assistant's own echo: a minute of speech played
/// into a room that echoes all of it back (the null sink's monitor as the microphone, at full
/// volume), with no one speaking, silences the speaker not once.
#[test]
fn the_assistants_own_echo_never_barges_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pulse = Pulse::start(dir.path());
    pulse_devices(dir.path(), &pulse);
    run_child(
        (module_path!(), "child_echo_never_barges_in"),
        dir.path(),
        Duration::from_secs(120),
    );
}

#[test]
fn child_echo_never_barges_in() {
    let Some(_dir) = child_dir() else { return };
    let mut cfg = audio_config("src", "sink");
    cfg.echo_cancellation = true;
    cfg.noise_suppression = true;
    let engine = Engine::start_with(
        &cfg,
        EngineOptions {
            mic_frames: 4000,
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    let mic = engine.microphone();
    let rt = runtime();
    count_frames(&rt, &mic, Duration::from_secs(2));
    engine.set_capture(true);
    // Answers as they come: a few seconds each, a pause between, a fresh canceller state
    // at the start of each (when an echo is hardest to tell from a voice).
    let mut played = Duration::ZERO;
    let mut answer = 0u64;
    while played < Duration::from_secs(60) {
        let seconds = 4 + answer % 5;
        engine.push(&speech_like(48_000 * seconds as usize, 11 + answer, true));
        count_frames(&rt, &mic, Duration::from_secs(seconds + 1));
        played += Duration::from_secs(seconds);
        answer += 1;
    }
    let stats = engine.stats();
    let fired = stats.local_barge_ins;
    eprintln!(
        "child: {} s of the assistant's speech in {answer} answers, echoed back at full volume: {fired} local barge-ins (capture xruns {}, playback xruns {}, far-end samples skipped {})",
        played.as_secs(),
        stats.capture_xruns,
        stats.playback_xruns,
        stats.reference_dropped
    );
    assert_eq!(fired, 0, "the assistant's own echo barged in");

    // The same room, and now a person talks over the next answer (a second player into the
    // same sink): that is heard, once.
    let Some(dir) = child_dir() else { return };
    testkit::signals::speech(&dir, "Stop, please stop talking now.");
    engine.push(&speech_like(48_000 * 6, 99, true));
    count_frames(&rt, &mic, Duration::from_millis(1500));
    let person = std::process::Command::new("aplay")
        .args(["-q", "-D", "sink"])
        .arg(dir.join("speech.wav"))
        .status()
        .expect("aplay");
    assert!(person.success());
    count_frames(&rt, &mic, Duration::from_secs(1));
    assert_eq!(
        engine.stats().local_barge_ins,
        1,
        "the person was not heard"
    );
}
