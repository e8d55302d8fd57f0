//! The audio engine through real alsa-lib, with no sound card: PCMs defined in an asoundrc
//! (`file` plugin over `null` for bit-exact, unpaced I/O; PulseAudio's null sink for real-time
//! pacing).
//!
//! alsa-lib reads its configuration once per process, so each scenario runs in a child process
//! (this same test binary, filtered to one `child_*` test) started with `ALSA_CONFIG_PATH`
//! pointing at the test's own asoundrc. `child_*` tests do nothing unless started that way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use realtime_voiced::audio::engine::{Engine, EngineOptions};
use realtime_voiced::audio::opus::{OpusDecoder, OpusEncoder, MAX_PACKET};
use realtime_voiced::audio::signals::speech_like;
use realtime_voiced::audio::{AudioControl, Speaker, FRAME_SAMPLES};
use realtime_voiced::config;
use realtime_voiced::session::Earcon;

const CHILD: &str = "RTV_AUDIO_CHILD_DIR";

fn tone(freq: f64, amp: f64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()) as i16)
        .collect()
}

fn write_raw(path: &Path, s: &[i16]) {
    let bytes: Vec<u8> = s.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write raw");
}

fn read_raw(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("read raw");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

/// Frequency from the rising zero crossings.
fn frequency(s: &[i16]) -> f64 {
    let crossings: Vec<usize> = (1..s.len())
        .filter(|&i| s[i - 1] < 0 && s[i] >= 0)
        .collect();
    if crossings.len() < 2 {
        return 0.0;
    }
    let span = (crossings[crossings.len() - 1] - crossings[0]) as f64;
    48_000.0 * (crossings.len() - 1) as f64 / span
}

fn audio_config(capture: &str, playback: &str) -> config::Audio {
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

/// The directory a child works in, or `None` when this is not a child run.
fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD).map(PathBuf::from)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `child_<name>` in a fresh process with the asoundrc in `dir`; returns its stderr.
fn run_child(name: &str, dir: &Path, timeout: Duration) -> String {
    let child = spawn_child(name, dir);
    finish_child(name, child, timeout)
}

fn spawn_child(name: &str, dir: &Path) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(
            "ALSA_CONFIG_PATH",
            format!(
                "/usr/share/alsa/alsa.conf:{}",
                dir.join("asound.conf").display()
            ),
        )
        .env(CHILD, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

fn finish_child(name: &str, mut child: Child, timeout: Duration) -> String {
    let status = wait_child(&mut child, timeout);
    let out = child.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        status && stdout.contains("1 passed"),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    // What the child measured, for the test log.
    for line in stderr.lines().filter(|l| l.starts_with("child: ")) {
        eprintln!("{line}");
    }
    format!("{stdout}{stderr}")
}

fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child timed out");
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
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
    std::fs::write(
        dir.path().join("asound.conf"),
        format!(
            "pcm.tonesrc {{ type file slave.pcm {{ type null }} file \"/dev/null\" infile \"{}\" format \"raw\" }}\n\
             pcm.nullout {{ type null }}\n",
            dir.path().join("tone.raw").display()
        ),
    )
    .expect("asoundrc");
    run_child("child_capture_tone", dir.path(), Duration::from_secs(30));
}

#[test]
fn child_capture_tone() {
    let Some(dir) = child_dir() else { return };
    let sent = read_raw(&dir.join("tone.raw"));
    let engine = Engine::start_with(
        &audio_config("tonesrc", "nullout"),
        EngineOptions {
            mic_frames: 100,
            capture_on: true,
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    let mic = engine.microphone();
    let got = runtime().block_on(async {
        let mut rx = mic.lock().await;
        let mut got = Vec::new();
        for _ in 0..50 {
            let frame = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a frame in time")
                .expect("channel open");
            got.extend_from_slice(&frame);
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

#[test]
fn decoded_playback_matches_the_source_and_earcons_are_mixed_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let infile = dir.path().join("silence.raw");
    write_raw(&infile, &vec![0i16; 480_000]);
    std::fs::write(
        dir.path().join("asound.conf"),
        format!(
            "pcm.quietsrc {{ type file slave.pcm {{ type null }} file \"/dev/null\" infile \"{}\" format \"raw\" }}\n\
             pcm.recsink {{ type file slave.pcm {{ type null }} file \"{}\" format \"raw\" }}\n",
            infile.display(),
            dir.path().join("played.raw").display()
        ),
    )
    .expect("asoundrc");
    run_child("child_playback_tone", dir.path(), Duration::from_secs(30));

    let played = read_raw(&dir.path().join("played.raw"));
    let source = tone(440.0, 10_000.0, 48_000);
    // The decoded tone: the first run of loud samples.
    let start = played
        .iter()
        .position(|s| s.abs() > 2_000)
        .expect("the tone was played");
    let body = &played[start + 4_800..start + 40_000];
    let (f_in, f_out) = (frequency(&source), frequency(body));
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
    let engine = Engine::start(&audio_config("quietsrc", "recsink")).expect("engine");
    let drained = Arc::new(AtomicU32::new(0));
    let d = drained.clone();
    engine.on_drained(move || {
        d.fetch_add(1, Ordering::SeqCst);
    });
    // Through the codec, as the WebRTC transport would deliver it.
    let mut enc = OpusEncoder::new().expect("encoder");
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
    wait_for("playback to drain", Duration::from_secs(10), || {
        drained.load(Ordering::SeqCst) == 1
    });
    assert_eq!(engine.played_ms(), 1_000);
    let stats = engine.stats();
    assert_eq!(stats.playback_dropped, 0);
    assert_eq!(stats.device_problem, None);
    engine.play_earcon(Earcon::Start);
    std::thread::sleep(Duration::from_millis(500));
    engine.flush_playback();
    assert_eq!(engine.played_ms(), 0);
    assert_eq!(
        drained.load(Ordering::SeqCst),
        1,
        "an earcon is not assistant speech"
    );
}

// ---------------------------------------------------------------------------------------------
// A device that does not exist.

#[test]
fn a_missing_device_is_one_clear_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("asound.conf"),
        "pcm.nullout { type null }\n",
    )
    .expect("conf");
    let output = run_child("child_missing_device", dir.path(), Duration::from_secs(30));
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

/// A PulseAudio server on a socket in `dir`, killed on drop.
struct Pulse(Child);

impl Pulse {
    fn start(dir: &Path) -> Pulse {
        let socket = dir.join("native");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "-L",
                &format!(
                    "module-native-protocol-unix socket={} auth-anonymous=1",
                    socket.display()
                ),
                "-L",
                "module-null-sink sink_name=nullsink rate=48000 channels=1 format=s16le",
            ])
            .env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio (packages pulseaudio, libasound2-plugins) must be installed");
        // The socket appears before the null sink is loaded: wait until the server lists it.
        let server = format!("unix:{}", socket.display());
        wait_for("PulseAudio's null sink", Duration::from_secs(10), || {
            sink_ready(&server)
        });
        Pulse(child)
    }
}

/// Whether a PulseAudio server at `server` has the null sink loaded.
fn sink_ready(server: &str) -> bool {
    Command::new("pactl")
        .args(["--server", server, "list", "short", "sinks"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("nullsink"))
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_paced_device_recovers_from_xruns_and_from_losing_its_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("native");
    std::fs::write(
        dir.path().join("asound.conf"),
        format!(
            "pcm.src {{ type pulse server \"unix:{0}\" device \"nullsink.monitor\" }}\n\
             pcm.sink {{ type pulse server \"unix:{0}\" device \"nullsink\" }}\n",
            socket.display()
        ),
    )
    .expect("asoundrc");
    let pulse = Pulse::start(dir.path());
    let mut child = spawn_child("child_paced", dir.path());
    // A child that ends early is reported with its output, not waited for.
    wait_for("the child to be ready", Duration::from_secs(60), || {
        dir.path().join("lose").exists() || matches!(child.try_wait(), Ok(Some(_)))
    });
    if !dir.path().join("lose").exists() {
        let out = finish_child("child_paced", child, Duration::from_secs(5));
        panic!("the child ended before the loss test: {out}");
    }
    drop(pulse);
    wait_for("the child to see the loss", Duration::from_secs(30), || {
        dir.path().join("lost").exists()
    });
    let _pulse = Pulse::start(dir.path());
    finish_child("child_paced", child, Duration::from_secs(60));
}

fn count_frames(
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

/// Stops the whole process (every thread) for `ms`, as a long scheduling stall would.
fn stall(ms: u32) {
    let pid = std::process::id();
    let mut waker = Command::new("sh")
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
    let engine = Engine::start_with(
        &cfg,
        EngineOptions {
            mic_frames: 500,
            capture_on: true,
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    let mic = engine.microphone();
    let rt = runtime();
    // A paced device may start late; then frames come at 50 per second.
    count_frames(&rt, &mic, Duration::from_secs(3));
    let n = count_frames(&rt, &mic, Duration::from_secs(1));
    eprintln!("child: {n} frames in 1 s from a paced device");
    assert!((35..=70).contains(&n), "{n} frames in a second");

    engine.push(&tone(440.0, 8_000.0, 48_000 * 3));
    std::thread::sleep(Duration::from_millis(500));
    stall(700);
    std::thread::sleep(Duration::from_millis(800));
    let stats = engine.stats();
    eprintln!(
        "child: after a 700 ms stall: {} capture xruns, {} playback xruns, {} underruns",
        stats.capture_xruns, stats.playback_xruns, stats.playback_underruns
    );
    assert!(
        stats.capture_xruns + stats.playback_xruns >= 1,
        "the stall caused no xrun: {stats:?}"
    );
    count_frames(&rt, &mic, Duration::from_millis(100));
    let n = count_frames(&rt, &mic, Duration::from_secs(1));
    assert!(n >= 35, "only {n} frames per second after recovering");

    std::fs::write(dir.join("lose"), "").expect("marker");
    wait_for("the loss to show", Duration::from_secs(20), || {
        engine.stats().device_problem.is_some()
    });
    let problem = engine.stats().device_problem.unwrap_or_default();
    eprintln!("child: while the server is gone: {problem}");
    std::fs::write(dir.join("lost"), "").expect("marker");
    wait_for("the devices to come back", Duration::from_secs(30), || {
        engine.stats().device_problem.is_none()
    });
    count_frames(&rt, &mic, Duration::from_secs(3));
    let n = count_frames(&rt, &mic, Duration::from_secs(1));
    eprintln!("child: reopened; {n} frames in 1 s");
    assert!(n >= 35, "only {n} frames per second after reopening");
}

// ---------------------------------------------------------------------------------------------
// End to end: what the speaker plays comes back on the microphone (the null sink's monitor);
// the canceller, fed what playback wrote, removes it.

#[test]
fn the_speaker_does_not_talk_to_itself_through_alsa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("native");
    std::fs::write(
        dir.path().join("asound.conf"),
        format!(
            "pcm.src {{ type pulse server \"unix:{0}\" device \"nullsink.monitor\" }}\n\
             pcm.sink {{ type pulse server \"unix:{0}\" device \"nullsink\" }}\n",
            socket.display()
        ),
    )
    .expect("asoundrc");
    let _pulse = Pulse::start(dir.path());
    run_child("child_echo_loop", dir.path(), Duration::from_secs(90));
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

// ---------------------------------------------------------------------------------------------
// Barge-in on a paced device: a flush silences the speaker at once.

#[test]
fn a_flush_silences_the_speaker_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("native");
    std::fs::write(
        dir.path().join("asound.conf"),
        format!(
            "pcm.src {{ type pulse server \"unix:{0}\" device \"nullsink.monitor\" }}\n\
             pcm.sink {{ type pulse server \"unix:{0}\" device \"nullsink\" }}\n",
            socket.display()
        ),
    )
    .expect("asoundrc");
    let _pulse = Pulse::start(dir.path());
    run_child("child_barge_in", dir.path(), Duration::from_secs(60));
}

async fn collect(
    rx: &mut tokio::sync::mpsc::Receiver<realtime_voiced::audio::Frame>,
    ms: u64,
) -> Vec<i16> {
    let end = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut got = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout_at(end, rx.recv()).await {
        got.extend_from_slice(&frame);
    }
    got
}

#[test]
fn child_barge_in() {
    let Some(_dir) = child_dir() else { return };
    let mut cfg = audio_config("src", "sink");
    cfg.earcons = false;
    let engine = Engine::start_with(
        &cfg,
        EngineOptions {
            mic_frames: 1000,
            capture_on: true,
            ..EngineOptions::default()
        },
    )
    .expect("engine");
    let mic = engine.microphone();
    let rt = runtime();
    count_frames(&rt, &mic, Duration::from_secs(2));
    let (before, played, after) = rt.block_on(async {
        let mut rx = mic.lock().await;
        engine.push(&tone(440.0, 10_000.0, 48_000 * 3));
        let before = collect(&mut rx, 800).await;
        let played = engine.played_ms();
        engine.flush_playback();
        assert_eq!(engine.played_ms(), 0, "played_ms counts from the flush");
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
