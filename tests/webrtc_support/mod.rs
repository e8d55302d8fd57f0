//! Shared by the WebRTC tests: a loopback configuration, a microphone that plays a tone burst in
//! real time, a speaker that records, tone analysis, child processes that die with the test,
//! and the aiortc virtualenv.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use realtime_voiced::audio::{Frame, Speaker, FRAME_SAMPLES};
use realtime_voiced::config::Config;
use realtime_voiced::transport::LinkContext;
use tokio::sync::mpsc;

pub const TONE_HZ: f64 = 440.0;

/// The TLS provider reqwest needs, and logs (`RUST_LOG`) shown with the test's output.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// A configuration for a call to a service on 127.0.0.1, with no STUN server.
pub fn loopback_config(base_url: &str) -> Config {
    let mut config = Config::default();
    config.api.base_url = base_url.to_owned();
    config.transport.allow_loopback = true;
    config.transport.ice_servers = Vec::new();
    config.transport.connect_timeout_ms = 10_000;
    config
}

/// Records everything the transport plays.
#[derive(Default)]
pub struct RecordingSpeaker {
    pub samples: Mutex<Vec<i16>>,
}

impl Speaker for RecordingSpeaker {
    fn push(&self, pcm: &[i16]) {
        if let Ok(mut s) = self.samples.lock() {
            s.extend_from_slice(pcm);
        }
    }
}

impl RecordingSpeaker {
    pub fn take(&self) -> Vec<i16> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A link context whose microphone is fed by the returned sender.
pub fn context(config: Config) -> (LinkContext, mpsc::Sender<Frame>, Arc<RecordingSpeaker>) {
    let (tx, rx) = mpsc::channel(64);
    let speaker = Arc::new(RecordingSpeaker::default());
    let ctx = LinkContext {
        config: Arc::new(config),
        microphone: Arc::new(tokio::sync::Mutex::new(rx)),
        speaker: speaker.clone(),
    };
    (ctx, tx, speaker)
}

/// Plays `tone_ms` of a 440 Hz tone then `silence_ms` of silence into the microphone, paced
/// like a real capture device (one 20 ms frame every 20 ms).
pub async fn play_tone_burst(mic: mpsc::Sender<Frame>, tone_ms: u32, silence_ms: u32) {
    let tone_frames = (tone_ms / 20) as usize;
    let total = tone_frames + (silence_ms / 20) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for f in 0..total {
        tick.tick().await;
        let mut frame = [0i16; FRAME_SAMPLES];
        if f < tone_frames {
            for (i, s) in frame.iter_mut().enumerate() {
                let t = (f * FRAME_SAMPLES + i) as f64 / 48_000.0;
                *s = (10_000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16;
            }
        }
        if mic.send(frame).await.is_err() {
            return;
        }
    }
}

pub fn rms(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
}

/// Power of `freq` in `s` (Goertzel), normalised by length.
pub fn goertzel(s: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in s {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (s.len() as f64).powi(2)
}

/// What came back, judged: the loudest 400 ms window's frequency by zero crossings, how much
/// of its energy sits at 440 Hz against neighbouring frequencies, and how quiet the end is.
#[derive(Debug)]
pub struct ToneReport {
    pub seconds: f64,
    pub peak_rms: f64,
    pub zero_crossing_hz: f64,
    pub goertzel_ratio: f64,
    pub tail_rms: f64,
}

pub fn analyse(samples: &[i16]) -> ToneReport {
    let window = 48_000 * 4 / 10;
    let step = 960;
    let mut best = (0usize, 0.0f64);
    let mut start = 0;
    while start + window <= samples.len() {
        let r = rms(&samples[start..start + window]);
        if r > best.1 {
            best = (start, r);
        }
        start += step;
    }
    let loud = &samples[best.0..(best.0 + window).min(samples.len())];
    let crossings = loud.windows(2).filter(|p| (p[0] < 0) != (p[1] < 0)).count();
    let zero_crossing_hz = crossings as f64 / 2.0 / (loud.len().max(1) as f64 / 48_000.0);
    let at_tone = goertzel(loud, TONE_HZ);
    let elsewhere = [300.0, 600.0, 880.0, 1000.0]
        .iter()
        .map(|&f| goertzel(loud, f))
        .fold(f64::MIN_POSITIVE, f64::max);
    let tail = &samples[samples.len().saturating_sub(9600)..];
    ToneReport {
        seconds: samples.len() as f64 / 48_000.0,
        peak_rms: best.1,
        zero_crossing_hz,
        goertzel_ratio: at_tone / elsewhere,
        tail_rms: rms(tail),
    }
}

/// A child process killed (and reaped) when the test ends, however it ends.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads stdout lines until one starts with `prefix`; returns the rest of it.
pub fn wait_for_line(child: &mut Child, prefix: &str, timeout: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(&prefix) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Python with aiortc and aiohttp, in a virtualenv under `target/` (created on first use).
/// `Err` says why there is none; the caller skips only when PyPI could not be reached.
pub fn aiortc_python() -> Result<PathBuf, String> {
    let venv = manifest_dir().join("target/venv");
    let python = venv.join("bin/python");
    let has_aiortc = |p: &Path| {
        Command::new(p)
            .args(["-c", "import aiortc, aiohttp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    // Several test binaries may get here at once: one installs, the others wait.
    let lock_path = manifest_dir().join("target/venv.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| format!("lock: {e}"))?;
    // SAFETY: flock on a file descriptor we own, released when `lock` is dropped.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    if python.exists() && has_aiortc(&python) {
        return Ok(python);
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err("python3 -m venv failed (is python3-venv installed?)".into());
    }
    let mut pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "--timeout",
            "20",
            "aiortc",
            "aiohttp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    let mut err = String::new();
    if let Some(mut stderr) = pip.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut err);
    }
    let status = pip.wait().map_err(|e| format!("pip: {e}"))?;
    if !status.success() || !has_aiortc(&python) {
        return Err(format!(
            "PIP_UNREACHABLE: pip install aiortc aiohttp failed: {}",
            err.trim()
        ));
    }
    Ok(python)
}

/// The aiortc stand-in service, listening on 127.0.0.1; returns it and its base URL.
pub fn start_aiortc_service() -> Result<(ChildGuard, String), String> {
    let python = aiortc_python()?;
    let script = manifest_dir().join("tests/peers/aiortc_service.py");
    let child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the aiortc service: {e}"))?;
    let mut guard = ChildGuard(child);
    let port = wait_for_line(&mut guard.0, "PORT ", Duration::from_secs(30))
        .ok_or("the aiortc service did not start")?;
    Ok((guard, format!("http://127.0.0.1:{port}/v1")))
}

/// Skips the test (returning from it) when PyPI is out of reach, fails it on anything else.
#[macro_export]
macro_rules! aiortc_or_skip {
    () => {
        match webrtc_support::start_aiortc_service() {
            Ok(service) => service,
            Err(e) if e.starts_with("PIP_UNREACHABLE") => {
                eprintln!("SKIPPED: aiortc is not installable here ({e})");
                return;
            }
            Err(e) => panic!("{e}"),
        }
    };
}

pub async fn fetch_stats(base_url: &str) -> serde_json::Value {
    let root = base_url.trim_end_matches("/v1");
    let body = reqwest::get(format!("{root}/stats"))
        .await
        .expect("stats")
        .text()
        .await
        .expect("stats body");
    serde_json::from_str(&body).expect("stats json")
}

/// The dialect the daemon speaks, for a WebRTC link with `config`.
pub fn dialect(config: &LinkContext) -> Arc<dyn realtime_voiced::transport::dialect::Dialect> {
    Arc::new(realtime_voiced::transport::dialect::RealtimeGa::new(
        config.config.clone(),
        realtime_voiced::config::TransportKind::Webrtc,
    ))
}
