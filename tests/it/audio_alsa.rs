//! The audio engine through real alsa-lib, with no sound card: PCMs defined in an asoundrc
//! (`file` plugin over `null` for bit-exact, unpaced I/O; PulseAudio's null sink for real-time
//! pacing). The canceller against the speaker's own echo is `echo_cancellation`; the flush on
//! barge-in is `playback_flush`.
//!
//! alsa-lib reads its configuration once per process, so each scenario runs in a child process
//! (this same test binary, filtered to one `child_*` test) started with `ALSA_CONFIG_PATH`
//! pointing at the test's own asoundrc. `child_*` tests do nothing unless started that way.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::audio::engine::{Engine, EngineOptions};
use realtime_voiced::audio::opus::{OpusDecoder, OpusEncoder, OpusProfile, MAX_PACKET};
use realtime_voiced::audio::{AudioControl, Speaker, FRAME_SAMPLES};
use realtime_voiced::config;
use realtime_voiced::session::Earcon;
use testkit::audio_rig::{alsa_config_path, Asoundrc, Pulse, Slave};
use testkit::own_process::{finish_test, spawn_test, test_name};
use testkit::signals::{read_raw, rising_crossing_hz, rms, tone, write_raw};
use testkit::wait::lazy;
use testkit::wait_for;

/// Set in a child: the directory of the test that started it.
const CHILD: &str = "RTV_AUDIO_CHILD_DIR";

pub(crate) fn audio_config(capture: &str, playback: &str) -> config::Audio {
    config::Audio {
        capture_device: capture.into(),
        playback_device: playback.into(),
        echo_cancellation: false,
        noise_suppression: false,
        volume: 1.0,
        earcons: true,
        ..config::Audio::default()
    }
}

/// An engine on `cfg`'s devices with the microphone on from the start; its frames queue up to
/// `mic_frames` before any is dropped.
pub(crate) fn listening_engine(cfg: &config::Audio, mic_frames: usize) -> Engine {
    Engine::start_with(
        cfg,
        EngineOptions {
            mic_frames,
            capture_on: true,
            ..EngineOptions::default()
        },
    )
    .expect("engine")
}

/// The directory a child works in, or `None` when this is not a child run.
pub(crate) fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD).map(PathBuf::from)
}

/// Runs `child` (`module_path!()`, test function) in a fresh process with the asoundrc in
/// `dir`; returns its stdout and stderr.
pub(crate) fn run_child(child: (&str, &str), dir: &Path, timeout: Duration) -> String {
    let running = spawn_child(child, dir);
    finish_child(child, running, timeout)
}

fn spawn_child((module, function): (&str, &str), dir: &Path) -> Child {
    let alsa = alsa_config_path(dir);
    let dir = dir.to_str().expect("utf-8");
    spawn_test(
        &test_name(module, function),
        &[("ALSA_CONFIG_PATH", &alsa), (CHILD, dir)],
    )
}

fn finish_child((module, function): (&str, &str), child: Child, timeout: Duration) -> String {
    let out = finish_test(&test_name(module, function), child, timeout);
    // What the child measured, for the test log.
    for line in out.lines().filter(|l| l.starts_with("child: ")) {
        eprintln!("{line}");
    }
    out
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// An asoundrc with `src` (the null sink's monitor) and `sink` (the null sink) of `pulse`.
pub(crate) fn pulse_devices(dir: &Path, pulse: &Pulse) {
    Asoundrc::new()
        .device("src", Slave::PulseMonitor(pulse))
        .device("sink", Slave::PulseSink(pulse))
        .write(dir);
}

/// Counts the microphone's frames over `d`.
pub(crate) fn count_frames(
    rt: &tokio::runtime::Runtime,
    mic: &realtime_voiced::audio::Microphone,
    d: Duration,
) -> usize {
    rt.block_on(async {
        let mut rx = mic.lock().await;
        let end = tokio::time::Instant::now() + d;
        let mut n = 0;
        while let Ok(Some(_)) = tokio::time::timeout_at(end, rx.recv()).await {
            n += 1;
        }
        n
    })
}

// ---------------------------------------------------------------------------------------------
// Bit-exact capture through the `file` plugin.

#[test]
fn a_captured_tone_equals_the_tone_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 10 s: past its end the file plugin hands out stale data, and capture is not paced.
    write_raw(
        &dir.path().join("tone.raw"),
        &tone(440.0, 12_000.0, 480_000),
    );
    Asoundrc::new()
        .reads_file("tonesrc", Slave::Null, &dir.path().join("tone.raw"))
        .device("nullout", Slave::Null)
        .write(dir.path());
    run_child(
        (module_path!(), "child_capture_tone"),
        dir.path(),
        Duration::from_secs(30),
    );
}

#[test]
fn child_capture_tone() {
    let Some(dir) = child_dir() else { return };
    let sent = read_raw(&dir.join("tone.raw"));
    let engine = listening_engine(&audio_config("tonesrc", "nullout"), 100);
    let mic = engine.microphone();
    let got = runtime().block_on(async {
        let mut rx = mic.lock().await;
        let mut got = Vec::new();
        for _ in 0..50 {
            let frame = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a frame in time")
                .expect("channel open");
            got.extend_from_slice(frame.samples());
        }
        got
    });
    assert_eq!(got.len(), 50 * FRAME_SAMPLES);
    let first_diff = got.iter().zip(&sent).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "captured audio differs from the tone sent"
    );
    eprintln!("child: captured {} samples bit-exact", got.len());
}

// ---------------------------------------------------------------------------------------------
// Decoded playback through the `file` plugin.

/// Runs the child test `child` on a silent microphone and a speaker recorded to a file;
/// returns every sample it played.
fn played_through_file(child: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().expect("tempdir");
    let infile = dir.path().join("silence.raw");
    write_raw(&infile, &vec![0i16; 480_000]);
    Asoundrc::new()
        .reads_file("quietsrc", Slave::Null, &infile)
        .writes_file("recsink", Slave::Null, &dir.path().join("played.raw"))
        .write(dir.path());
    run_child((module_path!(), child), dir.path(), Duration::from_secs(30));
    read_raw(&dir.path().join("played.raw"))
}

/// In a child: the engine on those devices, and how many times its playback drained.
fn engine_counting_drains() -> (Engine, Arc<AtomicU32>) {
    let engine = Engine::start(&audio_config("quietsrc", "recsink")).expect("engine");
    let drained = Arc::new(AtomicU32::new(0));
    let d = drained.clone();
    engine.on_drained(move || {
        d.fetch_add(1, Ordering::SeqCst);
    });
    (engine, drained)
}

#[test]
fn decoded_playback_matches_the_source_and_earcons_are_mixed_in() {
    let played = played_through_file("child_playback_tone");
    let source = tone(440.0, 10_000.0, 48_000);
    // The decoded tone: the first run of loud samples.
    let start = played
        .iter()
        .position(|s| s.abs() > 2_000)
        .expect("the tone was played");
    let body = &played[start + 4_800..start + 40_000];
    let (f_in, f_out) = (rising_crossing_hz(&source), rising_crossing_hz(body));
    let level = 20.0 * (rms(body) / rms(&source)).log10();
    eprintln!("played tone: {f_out:.1} Hz (sent {f_in:.1} Hz), level {level:+.2} dB");
    assert!((f_out - f_in).abs() < 2.0, "frequency {f_out} vs {f_in}");
    assert!(level.abs() < 1.5, "level off by {level:.2} dB");

    // The start earcon, played at full volume over silence, is in the file sample for sample.
    let chime = realtime_voiced::audio::earcons::Earcons::default();
    let chime = chime.get(Earcon::Start);
    let at = played
        .windows(64)
        .position(|w| w == &chime[1_000..1_064])
        .expect("the earcon is in the recording");
    assert_eq!(&played[at - 1_000..at - 1_000 + chime.len()], chime);
}

#[test]
fn child_playback_tone() {
    let Some(_dir) = child_dir() else { return };
    let (engine, drained) = engine_counting_drains();
    // Through the codec, as the WebRTC transport would deliver it.
    let mut enc = OpusEncoder::with_profile(OpusProfile::SERVICE).expect("encoder");
    let mut dec = OpusDecoder::new().expect("decoder");
    let mut packet = [0u8; MAX_PACKET];
    let mut out = [0i16; FRAME_SAMPLES * 6];
    let source = tone(440.0, 10_000.0, 48_000);
    let mut decoded = Vec::new();
    for chunk in source.chunks_exact(FRAME_SAMPLES) {
        let frame: [i16; FRAME_SAMPLES] = chunk.try_into().expect("frame");
        let n = enc.encode(&frame, &mut packet).expect("encode");
        let m = dec.decode(&packet[..n], &mut out).expect("decode");
        decoded.extend_from_slice(&out[..m]);
    }
    // One push: this sink is not paced, so frames pushed one by one would each play and
    // drain before the next arrives.
    engine.push(&decoded);
    wait_for(Duration::from_secs(10), "playback to drain", || {
        (drained.load(Ordering::SeqCst) == 1).then_some(())
    });
    assert_eq!(engine.item_heard().heard_ms, 1_000);
    let stats = engine.stats();
    assert_eq!(stats.playback_dropped, 0);
    assert_eq!(stats.device_problem, None);
    engine.play_earcon(Earcon::Start);
    std::thread::sleep(Duration::from_millis(500));
    engine.flush_playback();
    assert_eq!(engine.item_heard().heard_ms, 0);
    assert_eq!(
        drained.load(Ordering::SeqCst),
        1,
        "an earcon is not assistant speech"
    );
}

/// A whole answer arriving at once, as the WebSocket delivers it: longer than the speaker's
/// ring, so most of it waits in the backlog behind it.
fn long_answer() -> Vec<i16> {
    let seconds = realtime_voiced::audio::engine::SPEAKER_RING_S as usize + 2;
    (0..48_000 * seconds)
        .map(|i| ((i * 7) % 16_000) as i16 - 8_000)
        .collect()
}

#[test]
fn an_answer_longer_than_the_ring_plays_whole_and_in_order() {
    let played = played_through_file("child_long_answer");
    let answer = long_answer();
    let start = played
        .windows(64)
        .position(|w| w == &answer[..64])
        .expect("the answer was played");
    let end = (start + answer.len()).min(played.len());
    assert!(
        played[start..end] == answer[..],
        "{} of {} samples played, or not in order",
        end - start,
        answer.len()
    );
}

#[test]
fn child_long_answer() {
    let Some(_dir) = child_dir() else { return };
    let (engine, drained) = engine_counting_drains();
    let answer = long_answer();
    engine.item_boundary();
    engine.push(&answer);
    wait_for(Duration::from_secs(15), "playback to drain", || {
        (drained.load(Ordering::SeqCst) == 1).then_some(())
    });
    let stats = engine.stats();
    assert_eq!(stats.playback_dropped, 0);
    assert_eq!(
        engine.item_heard().heard_ms as usize,
        answer.len() / 48,
        "heard all of it"
    );
}

// ---------------------------------------------------------------------------------------------
// A device that does not exist.

#[test]
fn a_missing_device_is_one_clear_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    Asoundrc::new()
        .device("nullout", Slave::Null)
        .write(dir.path());
    let output = run_child(
        (module_path!(), "child_missing_device"),
        dir.path(),
        Duration::from_secs(30),
    );
    // alsa-lib's own diagnostics are folded into our error, not sprayed on stderr.
    assert!(!output.contains("ALSA lib"), "{output}");
}

#[test]
fn child_missing_device() {
    let Some(_dir) = child_dir() else { return };
    let err = match Engine::start(&audio_config("no_such_microphone", "nullout")) {
        Ok(_) => panic!("opened a device that does not exist"),
        Err(e) => e.to_string(),
    };
    eprintln!("child: error: {err}");
    assert!(
        err.contains("capture device `no_such_microphone`") && !err.contains('\n'),
        "{err}"
    );
    let err = match Engine::start(&audio_config("nullout", "no_such_speaker")) {
        Ok(_) => panic!("opened a device that does not exist"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("playback device `no_such_speaker`"), "{err}");

    // The daemon's way: start anyway, show the problem, keep trying in the background.
    let engine = Engine::start_with(
        &audio_config("no_such_microphone", "nullout"),
        EngineOptions {
            wait_for_devices: true,
            ..EngineOptions::default()
        },
    )
    .expect("starts without its microphone");
    let problem = engine.stats().device_problem.unwrap_or_default();
    eprintln!("child: device problem shown: {problem}");
    assert!(
        problem.contains("capture device `no_such_microphone`"),
        "{problem}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real-time pacing through PulseAudio's null sink: xruns, and a server that goes away.

#[test]
fn a_paced_device_recovers_from_xruns_and_from_losing_its_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pulse = Pulse::start(dir.path());
    // Still right for the server started again below, on the same socket.
    pulse_devices(dir.path(), &pulse);
    let paced = (module_path!(), "child_paced");
    let mut child = spawn_child(paced, dir.path());
    // A child that fails ends with its reason, which is shown rather than a timeout here.
    let stage = if marker_or_end(dir.path(), "lose", &mut child, Duration::from_secs(60)) {
        drop(pulse);
        if marker_or_end(dir.path(), "lost", &mut child, Duration::from_secs(30)) {
            let _pulse = Pulse::start(dir.path());
            finish_child(paced, child, Duration::from_secs(60));
            return;
        }
        "while the server was gone"
    } else {
        "before the server went away"
    };
    let out = finish_child(paced, child, Duration::from_secs(5));
    panic!("the child stopped {stage}: {out}");
}

#[test]
fn a_device_that_stalls_without_an_error_is_reported_and_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pulse = Pulse::start(dir.path());
    pulse_devices(dir.path(), &pulse);
    let stalled = (module_path!(), "child_stalled");
    let mut child = spawn_child(stalled, dir.path());
    // Once while the microphone runs and the speaker is idle, once while the speaker plays.
    for (ready, seen) in [("listening", "mic-stalled"), ("playing", "speaker-stalled")] {
        if !marker_or_end(dir.path(), ready, &mut child, Duration::from_secs(60)) {
            break;
        }
        // The server stops answering but keeps its sockets open: no error reaches the client,
        // its audio just stops, as with a device whose clock stopped.
        assert!(pulse.proc.signal(libc::SIGSTOP), "stop the sound server");
        // Whatever the child saw, the server resumes before the child is judged: a client
        // closing a stream waits for the server's answer.
        marker_or_end(dir.path(), seen, &mut child, Duration::from_secs(30));
        assert!(pulse.proc.signal(libc::SIGCONT), "resume the sound server");
    }
    finish_child(stalled, child, Duration::from_secs(90));
}

/// Waits up to `limit` for the child to write the marker `name` or to end; whether it wrote it.
fn marker_or_end(dir: &Path, name: &str, child: &mut Child, limit: Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if dir.join(name).exists() {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    dir.join(name).exists()
}

#[test]
fn child_stalled() {
    let Some(dir) = child_dir() else { return };
    let engine = listening_engine(&audio_config("src", "sink"), 500);
    let mic = engine.microphone();
    let rt = runtime();
    let frames_per_second = |when: &str| {
        count_frames(&rt, &mic, Duration::from_secs(2));
        let n = count_frames(&rt, &mic, Duration::from_secs(1));
        eprintln!("child: {when}: {n} frames in 1 s");
        assert!(n >= 35, "only {n} frames in a second {when}");
    };
    let stall_shows = |ready: &str, seen: &str, device: &str| {
        std::fs::write(dir.join(ready), "").expect("marker");
        let problem = wait_for(
            Duration::from_secs(15),
            lazy(|| format!("the stall to show: {:?}", engine.stats())),
            || {
                let stats = engine.stats();
                stats
                    .device_problem
                    .filter(|p| p.contains(device) && p.contains("no audio moved for 3 s"))
            },
        );
        eprintln!("child: while the server is stopped: {problem}");
        let losses = engine.stats().device_losses;
        std::fs::write(dir.join(seen), "").expect("marker");
        wait_for(
            Duration::from_secs(30),
            lazy(|| format!("the devices to come back: {:?}", engine.stats())),
            || engine.stats().device_problem.is_none().then_some(()),
        );
        losses
    };

    frames_per_second("before the stall");
    let losses = stall_shows("listening", "mic-stalled", "capture device `src`");
    assert!(losses >= 1, "{:?}", engine.stats());
    frames_per_second("after the microphone's stall");

    // Long enough to be playing throughout the stall and the reopen.
    engine.push(&tone(440.0, 8_000.0, 48_000 * 30));
    std::thread::sleep(Duration::from_secs(1));
    let losses_after = stall_shows("playing", "speaker-stalled", "playback device `sink`");
    assert!(losses_after > losses, "{:?}", engine.stats());
    frames_per_second("after the speaker's stall");
}

/// Stops the whole process (every thread) for `ms`, as a long scheduling stall would.
fn stall(ms: u32) {
    let pid = std::process::id();
    let mut waker = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep {}; kill -CONT {pid}",
            f64::from(ms) / 1000.0
        ))
        .spawn()
        .expect("sh");
    // SAFETY: sending a signal to ourselves; SIGCONT from the helper resumes us.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    let _ = waker.wait();
}

#[test]
fn child_paced() {
    let Some(dir) = child_dir() else { return };
    let mut cfg = audio_config("src", "sink");
    cfg.echo_cancellation = true;
    cfg.noise_suppression = true;
    // The microphone is the speaker's monitor. After a stall the canceller's reference and the
    // echo no longer line up, and a local barge-in (seen once in CI) stops the speaker until
    // a daemon flushes it, which this engine has none of: a stopped device has no xrun to show.
    cfg.local_barge_in = false;
    let engine = listening_engine(&cfg, 500);
    let mic = engine.microphone();
    let rt = runtime();
    // A paced device may start late; then frames come at 50 per second.
    count_frames(&rt, &mic, Duration::from_secs(3));
    let n = count_frames(&rt, &mic, Duration::from_secs(1));
    eprintln!("child: {n} frames in 1 s from a paced device");
    assert!((35..=70).contains(&n), "{n} frames in a second");

    engine.push(&tone(440.0, 8_000.0, 48_000 * 3));
    std::thread::sleep(Duration::from_millis(500));
    // The sound server's own buffer may absorb a stall (how much it keeps varies from run to
    // run): stall longer until one gets through to the device as an xrun.
    let mut stats = engine.stats();
    for ms in [700, 1500, 3000] {
        stall(ms);
        std::thread::sleep(Duration::from_millis(800));
        stats = engine.stats();
        eprintln!(
            "child: after a {ms} ms stall: {} capture xruns, {} playback xruns, {} underruns",
            stats.capture_xruns, stats.playback_xruns, stats.playback_underruns
        );
        if stats.capture_xruns + stats.playback_xruns >= 1 {
            break;
        }
    }
    assert!(
        stats.capture_xruns + stats.playback_xruns >= 1,
        "the stall caused no xrun: {stats:?}"
    );
    count_frames(&rt, &mic, Duration::from_millis(100));
    let n = count_frames(&rt, &mic, Duration::from_secs(1));
    assert!(n >= 35, "only {n} frames per second after recovering");

    std::fs::write(dir.join("lose"), "").expect("marker");
    wait_for(
        Duration::from_secs(20),
        lazy(|| format!("the loss to show: {:?}", engine.stats())),
        || engine.stats().device_problem.is_some().then_some(()),
    );
    let problem = engine.stats().device_problem.unwrap_or_default();
    eprintln!("child: while the server is gone: {problem}");
    std::fs::write(dir.join("lost"), "").expect("marker");
    wait_for(Duration::from_secs(30), "the devices to come back", || {
        engine.stats().device_problem.is_none().then_some(())
    });
    // Back, and the loss still shows in the counters.
    assert!(engine.stats().device_losses >= 1, "{:?}", engine.stats());
    count_frames(&rt, &mic, Duration::from_secs(3));
    let n = count_frames(&rt, &mic, Duration::from_secs(1));
    eprintln!("child: reopened; {n} frames in 1 s");
    assert!(n >= 35, "only {n} frames per second after reopening");
}
