//! Real parts for end-to-end tests on a machine with no sound card: a private D-Bus, PulseAudio
//! with a null sink behind ALSA (real-time pacing) with `file` plugins to inject and record
//! exact samples, the realtime simulator, and speech from espeak-ng. Every process is killed
//! when its guard drops, and every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_realtime-voiced");
pub const SIM: &str = env!("CARGO_BIN_EXE_realtime-sim");
pub const NAME: &str = "io.thrive.RealtimeVoice1";
pub const PATH: &str = "/io/thrive/RealtimeVoice1";

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `check` until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private session-style bus.
pub struct Bus {
    pub address: String,
    _proc: Proc,
}

impl Bus {
    pub fn start(dir: &Path) -> Bus {
        let socket = dir.join("bus");
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("bus address");
        Bus {
            address: line.trim().to_owned(),
            _proc: Proc {
                child,
                name: "dbus-daemon",
            },
        }
    }

    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("10")
            .arg("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("run busctl")
    }

    pub fn call(&self, method: &str, extra: &[&str]) -> Output {
        let mut args = vec!["call", NAME, PATH, NAME, method];
        args.extend_from_slice(extra);
        self.busctl(&args)
    }

    /// A property's value as busctl prints it (`s "listening"` → `listening`).
    pub fn property(&self, name: &str) -> Option<String> {
        let out = self.busctl(&["get-property", NAME, PATH, NAME, name]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(
            text.split_once(' ')
                .map_or(text.clone(), |(_, v)| v.trim_matches('"').to_owned()),
        )
    }

    pub fn wait_state(&self, want: &str, limit: Duration) {
        wait_for(limit, &format!("State = {want}"), || {
            (self.property("State").as_deref() == Some(want)).then_some(())
        });
    }

    /// Records the daemon's signals (one line each) into a file.
    pub fn monitor(&self, out: &Path) -> Proc {
        let file = std::fs::File::create(out).expect("monitor file");
        // Line-buffered: dbus-monitor is killed at the end and must not lose what it saw.
        let child = Command::new("stdbuf")
            .args(["-oL", "dbus-monitor", "--address", &self.address])
            .arg(format!("type='signal',interface='{NAME}'"))
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-monitor");
        Proc {
            child,
            name: "dbus-monitor",
        }
    }
}

/// PulseAudio with a null sink: ALSA devices behind it are paced in real time.
pub struct Pulse {
    pub socket: PathBuf,
    _proc: Proc,
}

impl Pulse {
    pub fn start(dir: &Path) -> Pulse {
        let socket = dir.join("pulse-native");
        let runtime = dir.join("pulse-runtime");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disallow-exit",
            ])
            .arg("-L")
            .arg(format!(
                "module-native-protocol-unix socket={} auth-anonymous=1",
                socket.display()
            ))
            .arg("-L")
            .arg("module-null-sink sink_name=nullsink rate=48000 channels=1 format=s16le")
            .env("PULSE_RUNTIME_PATH", &runtime)
            .env("HOME", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pulseaudio");
        // The socket appears before the null sink is loaded: wait until the server lists it.
        let server = format!("unix:{}", socket.display());
        wait_for(Duration::from_secs(10), "PulseAudio's null sink", || {
            Command::new("pactl")
                .args(["--server", &server, "list", "short", "sinks"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("nullsink"))
                .then_some(())
        });
        Pulse {
            socket,
            _proc: Proc {
                child,
                name: "pulseaudio",
            },
        }
    }
}

/// Writes an ALSA configuration with `rtv_mic` (plays `mic_raw` into capture, paced by the null
/// sink's monitor) and `rtv_speaker` (records playback into `speaker_raw`, paced by the sink).
/// Returns the value for `ALSA_CONFIG_PATH`.
pub fn asound_conf(dir: &Path, pulse: &Pulse, mic_raw: &Path, speaker_raw: &Path) -> String {
    let conf = dir.join("asound.conf");
    let server = format!("unix:{}", pulse.socket.display());
    std::fs::write(
        &conf,
        format!(
            r#"
pcm.rtv_mic {{
    type file
    slave.pcm {{ type pulse server "{server}" device "nullsink.monitor" }}
    file "/dev/null"
    infile "{mic}"
    format "raw"
}}
pcm.rtv_speaker {{
    type file
    slave.pcm {{ type pulse server "{server}" device "nullsink" }}
    file "{speaker}"
    format "raw"
}}
"#,
            mic = mic_raw.display(),
            speaker = speaker_raw.display(),
        ),
    )
    .expect("write asound.conf");
    format!("/usr/share/alsa/alsa.conf:{}", conf.display())
}

/// Speech as mono S16LE 48 kHz samples, from espeak-ng through sox.
pub fn speech(dir: &Path, text: &str) -> Vec<i16> {
    let wav = dir.join("speech.wav");
    let raw = dir.join("speech.raw");
    let ok = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("run espeak-ng")
        .success();
    assert!(ok, "espeak-ng failed");
    let ok = Command::new("sox")
        .arg(&wav)
        .args([
            "-r",
            "48000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            "-t",
            "raw",
        ])
        .arg(&raw)
        .status()
        .expect("run sox")
        .success();
    assert!(ok, "sox failed");
    read_raw(&raw)
}

pub fn read_raw(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

pub fn write_raw(path: &Path, samples: &[i16]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write raw");
}

pub fn silence(ms: usize) -> Vec<i16> {
    vec![0; ms * 48]
}

pub fn tone(freq: f64, ms: usize, amplitude: f64) -> Vec<i16> {
    (0..ms * 48)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()) as i16
        })
        .collect()
}

/// RMS level of a slice.
pub fn rms(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
}

/// The realtime simulator as a process on 127.0.0.1.
pub struct Sim {
    pub port: u16,
    pub proc: Proc,
    pub log: PathBuf,
}

impl Sim {
    pub fn start(dir: &Path, port: u16, args: &[&str]) -> Sim {
        let log = dir.join(format!(
            "sim-{port}-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let mut child = Command::new(SIM)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("sim log"))
            .spawn()
            .expect("start realtime-sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("sim address");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected simulator banner: {line:?}"));
        Sim {
            port,
            proc: Proc {
                child,
                name: "realtime-sim",
            },
            log,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}
