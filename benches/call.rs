//! A two-way continuous call: the built daemon and an aiortc client (a WebRTC stack we did not
//! write, with no sound devices and no echo canceller) each send the same speech, looped, for
//! the whole call, and the simulator (`--reply mirror`) sends every 20 ms straight back, so that
//! audio flows both ways all the time. Speech rather than a steady tone: the daemon's noise
//! suppression takes a steady tone for noise and sends near silence, which would make the reply
//! (and its Opus, jitter buffer and playback work) cheaper than in a real call. Measured side by side, interleaved, run after run:
//! - the daemon on PulseAudio devices (a null sink, through ALSA's `pulse` plugin: real-time
//!   paced, with PulseAudio's client thread inside the daemon's process);
//! - the daemon on `file` devices over ALSA's `null` (no sound server; the daemon paces the
//!   clock-less devices itself), with alsa-lib given only those devices, so that the system's
//!   PulseAudio hook does not load libpulse into it as it would into any alsa-lib user here;
//! - the aiortc client.
//!
//! The simulator checks ICE consent at webrtc-rs's pace (`--slow-ice`), not every 20 ms, so
//! that its STUN requests do not wake the callers 50 times a second, which a service would not
//! do; calls then come up about 200 ms later than with the default simulator, so Start ->
//! listening is measured by `cargo bench --bench webrtc_connect` and the session bench.
//!
//! Echo cancellation and noise suppression on, local barge-in off (the mirrored tone would
//! otherwise be the user talking over the reply). Each process is measured over the same
//! window, after a warm-up that is reported on its own: CPU (% of one core, from `/proc`),
//! context switches per second (all threads), peak RSS, and for the daemon the same by thread
//! and the delay it adds each way (`Stats`: `mic_to_wire_ms`, `wire_to_speaker_ms`).
//!
//! `cargo bench --bench call` (root; PulseAudio, dbus-daemon; aiortc in target/venv, which
//! `cargo test --test it aiortc_interop` installs). Options after `--`: `--runs N` (3),
//! `--seconds S` (30), `--only pulse,file-null,aiortc` (a subset), `--perf DIR` (records each device setup's first run with
//! `perf record -e cpu-clock` into DIR and prints the split by library, by thread, and by both),
//! `--audio 'period_ms = 5; jitter_buffer_ms = 20'` (more `[audio]` settings for the daemon).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::audio_rig::{Asoundrc, Pulse, Slave};
use testkit::bus::Bus;
use testkit::proc::have;
use testkit::procstat::{by_name, context_switches, cpu_seconds, peak_rss_mib, threads};
use testkit::signals::{rms, speech, write_raw, PARAGRAPH};
use testkit::sim::SimProcess;
use testkit::{wait_for, Proc};

const DAEMON: &str = env!("CARGO_BIN_EXE_realtime-voiced");
/// Measured apart from the window: the first seconds after `listening` cost more.
const WARM_UP_S: u64 = 5;

#[derive(Clone, Copy, PartialEq)]
enum Devices {
    Pulse,
    FileNull,
}

impl Devices {
    fn label(self) -> &'static str {
        match self {
            Devices::Pulse => "pulse",
            Devices::FileNull => "file/null",
        }
    }
}

#[derive(Default, Clone)]
struct Figures {
    start_to_listening_ms: f64,
    warm_up_cpu_pct: f64,
    cpu_pct: f64,
    switches_per_s: f64,
    peak_rss_mib: f64,
    /// Share of the window's 20 ms blocks at the speaker (or received) with sound in them.
    audio_pct: f64,
    /// The daemon's own `Stats` at the end of the window: the delay it adds each way
    /// (median, 95th percentile; NaN for aiortc).
    mic_to_wire_ms: (f64, f64),
    wire_to_speaker_ms: (f64, f64),
    /// Times the jitter buffer ran dry mid-answer, and pauses it cut short to bring the delay
    /// back down (ms; the daemon's `Stats`).
    underruns: f64,
    shed_ms: f64,
    /// Per thread name: threads, % of a core, switches per second.
    by_thread: Vec<(String, usize, f64, f64)>,
}

struct Options {
    runs: usize,
    seconds: u64,
    perf: Option<PathBuf>,
    /// Which setups to run (all by default).
    pulse: bool,
    file_null: bool,
    aiortc: bool,
    /// More `[audio]` settings for the daemon, e.g. `period_ms = 5; jitter_buffer_ms = 20`.
    audio: String,
}

fn options() -> Options {
    let mut o = Options {
        runs: 3,
        seconds: 30,
        perf: None,
        pulse: true,
        file_null: true,
        aiortc: true,
        audio: String::new(),
    };
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--seconds" => o.seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(30),
            "--perf" => o.perf = args.next().map(PathBuf::from),
            "--only" => only.extend(args.next()),
            "--audio" => o.audio = args.next().unwrap_or_default().replace(';', "\n"),
            _ => {} // cargo's own `--bench`
        }
    }
    if !only.is_empty() {
        o.pulse = only.iter().any(|w| w.contains("pulse"));
        o.file_null = only.iter().any(|w| w.contains("null"));
        o.aiortc = only.iter().any(|w| w.contains("aiortc"));
    }
    o
}

/// The bench's `[audio]` settings, with those that `--audio` names replaced by its own.
/// Local barge-in is off: nothing of the daemon's speaker reaches its microphone here, so the
/// user's voice would interrupt every mirrored answer (`--audio 'local_barge_in = true;
/// barge_in_threshold_dbfs = 0'` measures its cost without it firing).
fn audio_settings(given: &str) -> String {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    let named: Vec<String> = given.lines().map(key).collect();
    [
        "earcons = false",
        "echo_cancellation = true",
        "noise_suppression = true",
        "local_barge_in = false",
    ]
    .iter()
    .filter(|line| !named.contains(&key(line)))
    .map(|line| format!("{line}\n"))
    .chain(std::iter::once(given.to_owned()))
    .collect()
}

/// `talk` repeated for at least `seconds`.
fn looped(talk: &[i16], seconds: u64) -> Vec<i16> {
    let want = seconds as usize * 48_000;
    talk.iter()
        .copied()
        .cycle()
        .take(want.max(talk.len()))
        .collect()
}

fn perf_record(pid: u32, seconds: u64, out: &Path) -> Option<Proc> {
    have("perf").then(|| {
        Proc::spawn(
            Command::new("perf")
                .args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p"])
                .arg(pid.to_string())
                .arg("-o")
                .arg(out)
                .args(["--", "sleep"])
                .arg(seconds.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    })
}

fn perf_report(data: &Path, sort: &str) -> String {
    let out = Command::new("timeout")
        .args([
            "120",
            "perf",
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
        ])
        .args(["--sort", sort, "--percent-limit", "1", "-i"])
        .arg(data)
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(14)
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

fn run_daemon(
    d: &Path,
    talk: &[i16],
    devices: Devices,
    o: &Options,
    perf: Option<&Path>,
) -> Figures {
    let mic_raw = d.join("mic.raw");
    write_raw(&mic_raw, &looped(talk, o.seconds + WARM_UP_S + 60));
    let speaker_raw = d.join("speaker.raw");
    let _ = std::fs::remove_file(&speaker_raw);

    let bus = Bus::session(d);
    let pulse = (devices == Devices::Pulse).then(|| Pulse::start(d));
    let (mic_slave, speaker_slave) = match &pulse {
        Some(p) => (Slave::PulseMonitor(p), Slave::PulseSink(p)),
        None => (Slave::Null, Slave::Null),
    };
    let rc = Asoundrc::new()
        .reads_file("rtv_mic", mic_slave, &mic_raw)
        .writes_file("rtv_speaker", speaker_slave, &speaker_raw);
    // No sound server means none in the process either (see `write_alone`).
    let alsa = match devices {
        Devices::Pulse => rc.write(d),
        Devices::FileNull => rc.write_alone(d),
    };
    let sim = SimProcess::start(d, 0, &["--reply", "mirror", "--slow-ice"]);
    let config = d.join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\n[session]\nidle_timeout_s = 0\n[transport]\nallow_loopback = true\n\
             ice_servers = []\n[audio]\ncapture_device = \"rtv_mic\"\nplayback_device = \"rtv_speaker\"\n\
             {}\n[dbus]\nbus = \"session\"\n",
            sim.base_url(),
            audio_settings(&o.audio)
        ),
    )
    .expect("config");
    let daemon = Proc::spawn(
        Command::new(DAEMON)
            .args(["--config", config.to_str().expect("utf-8")])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("ALSA_CONFIG_PATH", &alsa)
            .env("OPENAI_API_KEY", "sk-bench")
            .env("STATE_DIRECTORY", d.join("state"))
            .env("RUST_LOG", "warn")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("daemon.log")).expect("log")),
    );
    wait_for(Duration::from_secs(20), "the daemon on the bus", || {
        bus.property("State")
    });
    std::thread::sleep(Duration::from_secs(2));

    let pid = daemon.pid();
    let pressed = Instant::now();
    assert!(bus.call("Start", &[]).status.success(), "Start failed");
    wait_for(Duration::from_secs(15), "listening", || {
        (bus.property("State").as_deref() == Some("listening")).then_some(())
    });
    let start_to_listening_ms = pressed.elapsed().as_secs_f64() * 1000.0;
    let warm0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(WARM_UP_S));
    let warm_up_cpu_pct = (cpu_seconds(pid) - warm0) * 100.0 / WARM_UP_S as f64;

    let recorder = perf.and_then(|p| perf_record(pid, o.seconds, p));
    let speaker_at = std::fs::metadata(&speaker_raw).map_or(0, |m| m.len() as usize / 2);
    let (cpu0, sw0, threads0, t0) = (
        cpu_seconds(pid),
        context_switches(pid),
        threads(pid),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(o.seconds));
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, sw, threads1) = (
        cpu_seconds(pid) - cpu0,
        context_switches(pid).saturating_sub(sw0),
        threads(pid),
    );
    let peak_rss_mib = peak_rss_mib(pid);
    let stats = bus.property("Stats").unwrap_or_default();
    let stat = |key: &str| testkit::bus::stat(&stats, key).map_or(f64::NAN, |v| v as f64);
    let mic_to_wire_ms = (stat("mic_to_wire_ms"), stat("mic_to_wire_p95_ms"));
    let wire_to_speaker_ms = (stat("wire_to_speaker_ms"), stat("wire_to_speaker_p95_ms"));
    let underruns = stat("playback_underruns");
    let shed_ms = stat("playback_shed_ms");
    if let Some(mut r) = recorder {
        let _ = r.wait_exit(Duration::from_secs(30));
    }
    let _ = bus.call("Stop", &[]);
    daemon.signal(libc::SIGTERM);
    drop(daemon);
    drop(sim);
    drop(pulse);

    let played = testkit::signals::read_raw(&speaker_raw);
    let window = played.get(speaker_at..).unwrap_or(&[]);
    let blocks = window.chunks_exact(960).count().max(1);
    let loud = window.chunks_exact(960).filter(|b| rms(b) > 300.0).count();
    Figures {
        start_to_listening_ms,
        warm_up_cpu_pct,
        cpu_pct: cpu * 100.0 / wall,
        switches_per_s: sw as f64 / wall,
        peak_rss_mib,
        audio_pct: loud as f64 * 100.0 / blocks as f64,
        mic_to_wire_ms,
        wire_to_speaker_ms,
        underruns,
        shed_ms,
        by_thread: by_name(&threads0, &threads1)
            .into_iter()
            .map(|(n, k, c, s)| (n, k, c * 100.0 / wall, s as f64 / wall))
            .collect(),
    }
}

fn run_aiortc(d: &Path, talk: &Path, o: &Options) -> Option<Figures> {
    let python = testkit::aiortc::venv_python();
    if !python.exists() {
        eprintln!(
            "aiortc: no target/venv (run `cargo test --test it aiortc_interop` once to install it)"
        );
        return None;
    }
    let sim = SimProcess::start(d, 0, &["--reply", "mirror", "--slow-ice"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/aiortc_client.py");
    let out = Command::new("timeout")
        .arg((o.seconds + WARM_UP_S + 60).to_string())
        .arg(&python)
        .arg(&script)
        .arg(sim.base_url())
        .arg(o.seconds.to_string())
        .args(["--call", "--warm-up", &WARM_UP_S.to_string(), "--audio"])
        .arg(talk)
        .output()
        .ok()?;
    drop(sim);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = match text.lines().last().map(serde_json::from_str) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("aiortc: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
    };
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    Some(Figures {
        start_to_listening_ms: f("connect_ms"),
        warm_up_cpu_pct: f("warm_up_cpu_ms_per_s") / 10.0,
        cpu_pct: f("cpu_ms_per_audio_s") / 10.0,
        switches_per_s: f("context_switches_per_s"),
        peak_rss_mib: f("peak_rss_mib"),
        audio_pct: f("audio_pct"),
        mic_to_wire_ms: (f64::NAN, f64::NAN),
        wire_to_speaker_ms: (f64::NAN, f64::NAN),
        underruns: f64::NAN,
        shed_ms: f64::NAN,
        by_thread: Vec::new(),
    })
}

/// One round's line; `ready` names what `start_to_listening_ms` measured for that client.
fn print_run(run: usize, setup: &str, ready: &str, f: &Figures) {
    println!(
        "run {} {:<18} CPU {:5.2} % (warm-up {:5.2} %), {:4.0} switches/s, RSS {:5.1} MiB, \
         {ready} in {:3.0} ms, audio {:3.0} %",
        run + 1,
        setup,
        f.cpu_pct,
        f.warm_up_cpu_pct,
        f.switches_per_s,
        f.peak_rss_mib,
        f.start_to_listening_ms,
        f.audio_pct
    );
    if f.mic_to_wire_ms.0.is_finite() {
        println!(
            "      delay added: mic -> wire {:.0} ms (p95 {:.0}), wire -> speaker {:.0} ms (p95 {:.0}); \
             jitter buffer ran dry {:.0} times, {:.0} ms of delay cut",
            f.mic_to_wire_ms.0,
            f.mic_to_wire_ms.1,
            f.wire_to_speaker_ms.0,
            f.wire_to_speaker_ms.1,
            f.underruns,
            f.shed_ms
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !testkit::proc::is_root() || !have("pulseaudio") || !have("dbus-daemon") {
        println!("call bench skipped: needs root, pulseaudio and dbus-daemon");
        return;
    }
    let o = options();
    let talk_dir = tempfile::tempdir().expect("tempdir");
    let talk = speech(talk_dir.path(), PARAGRAPH);
    let talk_raw = talk_dir.path().join("talk.raw");
    write_raw(&talk_raw, &talk);
    let setups = ["daemon, pulse", "daemon, file/null", "aiortc client"];
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); setups.len()];
    for run in 0..o.runs {
        for (i, devices) in [Devices::Pulse, Devices::FileNull].into_iter().enumerate() {
            if !(if devices == Devices::Pulse {
                o.pulse
            } else {
                o.file_null
            }) {
                continue;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let perf = o.perf.as_ref().filter(|_| run == 0).map(|p| {
                let _ = std::fs::create_dir_all(p);
                p.join(format!("call-{}.data", devices.label().replace('/', "-")))
            });
            let f = run_daemon(dir.path(), &talk, devices, &o, perf.as_deref());
            print_run(run, setups[i], "listening", &f);
            if run + 1 == o.runs {
                for (name, k, cpu, sw) in &f.by_thread {
                    println!("      {name:<18} x{k:<2} {cpu:5.2} % {sw:6.0} switches/s");
                }
            }
            if let Some(p) = perf {
                println!(
                    "  perf, by library:\n{}\n  perf, by thread:\n{}\n  perf, by thread and library:\n{}",
                    perf_report(&p, "dso"),
                    perf_report(&p, "comm"),
                    perf_report(&p, "comm,dso")
                );
            }
            results[i].push(f);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        if !o.aiortc {
            continue;
        }
        if let Some(f) = run_aiortc(dir.path(), &talk_raw, &o) {
            print_run(run, setups[2], "connected", &f);
            results[2].push(f);
        }
    }
    println!(
        "\ncall benchmark: {} s two-way continuous call over WebRTC (speech each way, simulator mirroring), \
         median of {} interleaved runs",
        o.seconds, o.runs
    );
    println!(
        "{:<20} {:>9} {:>10} {:>11} {:>9} {:>12} {:>7} {:>12} {:>14}",
        "",
        "CPU %",
        "warm-up %",
        "switches/s",
        "RSS MiB",
        "listening ms",
        "audio %",
        "mic->wire ms",
        "wire->spkr ms"
    );
    // Setups left out with `--only` (or an aiortc that did not run) have no row.
    for (i, name) in setups.iter().enumerate() {
        if results[i].is_empty() {
            continue;
        }
        let m = |g: fn(&Figures) -> f64| median(results[i].iter().map(g).collect());
        println!(
            "{:<20} {:>9.2} {:>10.2} {:>11.0} {:>9.1} {:>12.0} {:>7.0} {:>12.0} {:>14.0}",
            name,
            m(|f| f.cpu_pct),
            m(|f| f.warm_up_cpu_pct),
            m(|f| f.switches_per_s),
            m(|f| f.peak_rss_mib),
            m(|f| f.start_to_listening_ms),
            m(|f| f.audio_pct),
            m(|f| f.mic_to_wire_ms.0),
            m(|f| f.wire_to_speaker_ms.0)
        );
    }
    let cpu = |i: usize| median(results[i].iter().map(|f| f.cpu_pct).collect());
    let (pulse, file_null, aiortc) = (cpu(0), cpu(1), cpu(2));
    if pulse.is_finite() && aiortc.is_finite() {
        println!(
            "daemon on PulseAudio / aiortc: {:.2} (target <= 0.33)",
            pulse / aiortc
        );
    }
    if file_null.is_finite() {
        println!("daemon on file/null: {file_null:.2} % (target <= 3 %)");
    }
}
