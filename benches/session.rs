//! A 60-second conversation through the built daemon, measured, side by side with aiortc (a
//! WebRTC stack we did not write) having the same conversation with the same simulator.
//!
//! `cargo bench --bench session` (root; PulseAudio, dbus-daemon; aiortc in target/venv, which
//! `cargo test --test it aiortc_interop` installs). Prints:
//! - Start → listening: from the D-Bus Start call to State = listening (busctl, 10 ms polling);
//! - the round trip: end of a tone burst at the microphone → onset of its echo at the speaker.
//!   The simulator answers when its voice detection hears the end of speech, as the service
//!   does, so both clients include the same detection wait; the difference between the two
//!   columns is what each client adds. ALSA positions are turned into wall-clock times with the
//!   engine's one-time "stream running" log lines (capture: first read; playback: first write
//!   of each run, with its offset in the recording);
//! - CPU time per second of audio (utime + stime from /proc over the 60 s), context switches
//!   per second (voluntary + involuntary, all threads) and peak RSS (VmHWM);
//! - before that, the idle daemon's CPU per second over 10 s (devices open, no conversation).
//!
//! The two-way continuous call (audio both ways all the time, on PulseAudio and on `file`/`null`
//! devices) is `benches/call.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::audio_rig::{Asoundrc, Pulse, Slave};
use testkit::bus::Bus;
use testkit::proc::have;
use testkit::procstat::{context_switches, cpu_seconds, peak_rss_mib};
use testkit::signals::{ms, read_raw, rms, silence, tone, write_raw};
use testkit::sim::SimProcess;
use testkit::{wait_for, Proc};

const DAEMON: &str = env!("CARGO_BIN_EXE_realtime-voiced");

const SESSION_S: u64 = 60;
/// The idle daemon is measured first; the microphone stream runs from the daemon's start, so
/// the bursts come after the idle measurement's worth of silence.
const IDLE_S: u64 = 10;
const BURSTS_S: [f64; 3] = [19.0, 37.0, 55.0];
const BURST_MS: usize = 800;

/// Seconds since the epoch of a tracing timestamp like `2026-11-22T19:01:03.071019Z`.
fn parse_ts(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (hh, mm, ss) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Onsets (sample index) of sound lasting at least 50 ms after at least 300 ms of quiet, in
/// 10 ms windows. A shorter click is not an echo: an Opus coder that kept its state across a
/// pause started each answer with a 20 ms blip of the last one, which read as an echo 300 ms
/// early.
fn onsets(samples: &[i16]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut quiet = 30;
    let (mut run, mut start) = (0usize, 0usize);
    for (i, w) in samples.chunks(480).enumerate() {
        if rms(w) > 500.0 {
            if run == 0 {
                start = i;
            }
            run += 1;
            if run == 5 && quiet >= 30 {
                out.push(start * 480);
            }
        } else {
            // A click counts as quiet; the end of a sound starts the quiet afresh.
            quiet = if run >= 5 { 0 } else { quiet + run };
            quiet += 1;
            run = 0;
        }
    }
    out
}

struct Daemon {
    idle_cpu_ms_per_s: f64,
    start_to_listening_ms: f64,
    round_trips_ms: Vec<f64>,
    cpu_ms_per_audio_s: f64,
    peak_rss_mib: f64,
    context_switches_per_s: f64,
    connect_ms: String,
}

fn run_daemon(d: &Path) -> Daemon {
    let mut mic = Vec::new();
    let mut burst_ends = Vec::new();
    for at in BURSTS_S {
        mic.extend(silence(ms((at * 1000.0) as usize - mic.len() / 48)));
        mic.extend(tone(440.0, 8000.0, ms(BURST_MS)));
        burst_ends.push(mic.len());
    }
    mic.extend(silence(ms((SESSION_S as usize + 30) * 1000)));
    let mic_raw = d.join("mic.raw");
    write_raw(&mic_raw, &mic);
    let speaker_raw = d.join("speaker.raw");

    let bus = Bus::session(d);
    let pulse = Pulse::start(d);
    let alsa = Asoundrc::new()
        .reads_file("rtv_mic", Slave::PulseMonitor(&pulse), &mic_raw)
        .writes_file("rtv_speaker", Slave::PulseSink(&pulse), &speaker_raw)
        .write(d);
    let sim = SimProcess::start(d, 0, &[]);
    let config = d.join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\n[session]\nidle_timeout_s = 0\n[transport]\nallow_loopback = true\n\
             ice_servers = []\n[audio]\ncapture_device = \"rtv_mic\"\nplayback_device = \"rtv_speaker\"\n\
             earcons = false\n[dbus]\nbus = \"session\"\n",
            sim.base_url()
        ),
    )
    .expect("config");
    let log_path = d.join("daemon.log");
    let daemon = Proc::spawn(
        Command::new(DAEMON)
            .args(["--config", config.to_str().expect("utf-8")])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("ALSA_CONFIG_PATH", &alsa)
            .env("OPENAI_API_KEY", "sk-bench")
            .env("STATE_DIRECTORY", d.join("state"))
            .env("RUST_LOG", "warn,realtime_voiced=debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log")),
    );
    wait_for(Duration::from_secs(20), "the daemon on the bus", || {
        bus.property("State")
    });

    // Between conversations: devices open, capture off.
    std::thread::sleep(Duration::from_secs(3));
    let idle0 = cpu_seconds(daemon.pid());
    std::thread::sleep(Duration::from_secs(IDLE_S));
    let idle_cpu_ms_per_s = (cpu_seconds(daemon.pid()) - idle0) * 1000.0 / IDLE_S as f64;

    let pressed = Instant::now();
    assert!(bus.call("Start", &[]).status.success(), "Start failed");
    wait_for(Duration::from_secs(15), "listening", || {
        (bus.property("State").as_deref() == Some("listening")).then_some(())
    });
    let start_to_listening_ms = pressed.elapsed().as_secs_f64() * 1000.0;
    let cpu0 = cpu_seconds(daemon.pid());
    let switches0 = context_switches(daemon.pid());
    std::thread::sleep(Duration::from_secs(SESSION_S));
    let cpu = cpu_seconds(daemon.pid()) - cpu0;
    let switches = context_switches(daemon.pid()).saturating_sub(switches0);
    let peak_rss_mib = peak_rss_mib(daemon.pid());
    let connect_ms = bus
        .stat("last_connect_ms")
        .map_or_else(|| "?".to_owned(), |ms| ms.to_string());
    let _ = bus.call("Stop", &[]);
    daemon.signal(libc::SIGTERM);
    drop(daemon);
    drop(sim);

    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let capture = log.lines().find(|l| l.contains("capture stream running"));
    let (cap_time, cap_samples) = capture
        .and_then(|l| Some((parse_ts(l)?, field(l, "samples")?)))
        .unwrap_or((0.0, 0));
    let runs: Vec<(f64, u64)> = log
        .lines()
        .filter(|l| l.contains("playback stream running"))
        .filter_map(|l| Some((parse_ts(l)?, field(l, "offset")?)))
        .collect();
    let played = read_raw(&speaker_raw);
    let wall_of_speaker = |k: usize| -> Option<f64> {
        let (t, offset) = runs.iter().rev().find(|(_, o)| *o as usize <= k)?;
        Some(t + (k as f64 - *offset as f64) / 48_000.0)
    };
    let echo_onsets: Vec<f64> = onsets(&played)
        .into_iter()
        .filter_map(wall_of_speaker)
        .collect();
    let mut round_trips_ms = Vec::new();
    if cap_time > 0.0 {
        for end in burst_ends {
            let end_wall = cap_time + (end as f64 - cap_samples as f64) / 48_000.0;
            if let Some(onset) = echo_onsets.iter().find(|&&o| o > end_wall) {
                round_trips_ms.push((onset - end_wall) * 1000.0);
            }
        }
    }
    Daemon {
        idle_cpu_ms_per_s,
        start_to_listening_ms,
        round_trips_ms,
        cpu_ms_per_audio_s: cpu * 1000.0 / SESSION_S as f64,
        peak_rss_mib,
        context_switches_per_s: switches as f64 / SESSION_S as f64,
        connect_ms,
    }
}

fn run_aiortc(d: &Path) -> Option<serde_json::Value> {
    let python = testkit::aiortc::venv_python();
    if !python.exists() {
        eprintln!(
            "aiortc: no target/venv (run `cargo test --test it aiortc_interop` once to install it)"
        );
        return None;
    }
    let sim = SimProcess::start(d, 0, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/aiortc_client.py");
    let out = Command::new("timeout")
        .arg((SESSION_S + 60).to_string())
        .arg(&python)
        .arg(&script)
        .arg(sim.base_url())
        .arg(SESSION_S.to_string())
        .output()
        .ok()?;
    drop(sim);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last()?;
    serde_json::from_str(line).ok().or_else(|| {
        eprintln!("aiortc: {}", String::from_utf8_lossy(&out.stderr));
        None
    })
}

fn main() {
    if !testkit::proc::is_root() || !have("pulseaudio") || !have("dbus-daemon") {
        println!("session bench skipped: needs root, pulseaudio and dbus-daemon");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = run_daemon(dir.path());
    let aiortc = run_aiortc(dir.path());
    let trips: Vec<String> = daemon
        .round_trips_ms
        .iter()
        .map(|t| format!("{t:.0}"))
        .collect();
    println!("session benchmark: {SESSION_S} s conversation over WebRTC with the simulator (echo)");
    println!(
        "{:<48} {:>16} {:>16}",
        "", "realtime-voiced", "aiortc client"
    );
    let a = |key: &str| {
        aiortc
            .as_ref()
            .and_then(|v| v.get(key))
            .map_or("-".to_owned(), |v| v.to_string())
    };
    println!(
        "{:<48} {:>16.1} {:>16}",
        "idle daemon, CPU ms per s (no conversation)", daemon.idle_cpu_ms_per_s, "-"
    );
    println!(
        "{:<48} {:>16.0} {:>16}",
        "Start -> listening (ms, via D-Bus)", daemon.start_to_listening_ms, "-"
    );
    println!(
        "{:<48} {:>16} {:>16}",
        "connect (ms, token + SDP + ICE + DTLS + SCTP)",
        daemon.connect_ms,
        a("connect_ms")
    );
    println!(
        "{:<48} {:>16} {:>16}",
        "burst end -> echo onset (ms, includes sim VAD)",
        if trips.is_empty() {
            "-".to_owned()
        } else {
            trips.join("/")
        },
        a("burst_end_to_echo_onset_ms")
    );
    println!(
        "{:<48} {:>16.1} {:>16}",
        "CPU ms per audio second",
        daemon.cpu_ms_per_audio_s,
        a("cpu_ms_per_audio_s")
    );
    println!(
        "{:<48} {:>16.0} {:>16}",
        "context switches per s (all threads)",
        daemon.context_switches_per_s,
        a("context_switches_per_s")
    );
    println!(
        "{:<48} {:>16.1} {:>16}",
        "peak RSS (MiB)",
        daemon.peak_rss_mib,
        a("peak_rss_mib")
    );
}
