//! Barge-in at the sound device: a flush silences the speaker at once, on a device paced in real
//! time (PulseAudio's null sink; what is played comes back on its monitor). Runs in a child
//! process as `audio_alsa` explains. Barge-in in a whole conversation is `conversation_e2e`.

use std::time::Duration;

use realtime_voiced::audio::{AudioControl, Speaker};
use testkit::audio_rig::Pulse;
use testkit::signals::{rms, tone};

use crate::audio_alsa::{
    audio_config, child_dir, count_frames, listening_engine, pulse_devices, run_child, runtime,
};

#[test]
fn a_flush_silences_the_speaker_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pulse = Pulse::start(dir.path());
    pulse_devices(dir.path(), &pulse);
    run_child(
        (module_path!(), "child_barge_in"),
        dir.path(),
        Duration::from_secs(60),
    );
}

async fn collect(
    rx: &mut tokio::sync::mpsc::Receiver<realtime_voiced::audio::MicFrame>,
    ms: u64,
) -> Vec<i16> {
    let end = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut got = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout_at(end, rx.recv()).await {
        got.extend_from_slice(frame.samples());
    }
    got
}

#[test]
fn child_barge_in() {
    let Some(_dir) = child_dir() else { return };
    let mut cfg = audio_config("src", "sink");
    cfg.earcons = false;
    let engine = listening_engine(&cfg, 1000);
    let mic = engine.microphone();
    let rt = runtime();
    count_frames(&rt, &mic, Duration::from_secs(2));
    let (before, played, after) = rt.block_on(async {
        let mut rx = mic.lock().await;
        engine.push(&tone(440.0, 10_000.0, 48_000 * 3));
        let before = collect(&mut rx, 800).await;
        let played = engine.item_heard().heard_ms;
        engine.flush_playback();
        assert_eq!(
            engine.item_heard().heard_ms,
            0,
            "played_ms counts from the flush"
        );
        // What was already in flight: the device's buffer and the path back to the microphone.
        collect(&mut rx, 150).await;
        let after = collect(&mut rx, 700).await;
        (before, played, after)
    });
    let loud = rms(&before[before.len() / 2..]);
    let quiet = rms(&after);
    eprintln!(
        "child: speaker at {loud:.0} rms before the flush (after {played} ms), {quiet:.1} rms from 150 ms after it"
    );
    assert!(loud > 2_000.0, "the tone was not heard: {loud:.0}");
    assert!(quiet < 20.0, "still playing after the flush: {quiet:.1}");
    assert!(
        (500..=1_000).contains(&played),
        "played {played} ms in 800 ms"
    );
}
