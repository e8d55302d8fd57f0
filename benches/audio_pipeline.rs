//! What the audio path costs: CPU time per second of audio and peak memory.
//!
//! `cargo bench --bench audio_pipeline` prints:
//! 1. the pipeline in one thread, stage by stage, over speech-like audio: echo cancellation and
//!    noise suppression (10 ms blocks against the far end), Opus encode, Opus decode, jitter
//!    buffer and playback mix; with and without the canceller; frames back to back and one per
//!    20 ms (as live); plus heap allocations counted in the steady state;
//! 2. a live session through real alsa-lib (`file`/`null` plugins, and a PulseAudio null sink
//!    when `pulseaudio` is installed): the engine's capture and playback threads, a transport
//!    stand-in that encodes every microphone frame, decodes it and plays it back; process CPU
//!    and each thread's CPU over 10 s, median of three child processes; and an idle engine;
//! 3. peak RSS (getrusage ru_maxrss) of the whole run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::audio::echo::{EchoCanceller, BLOCK};
use realtime_voiced::audio::engine::{Engine, EngineOptions};
use realtime_voiced::audio::jitter::{self, JitterSettings};
use realtime_voiced::audio::opus::{OpusDecoder, OpusEncoder, OpusProfile, MAX_PACKET};
use realtime_voiced::audio::signals::{speech_like, white_noise};
use realtime_voiced::audio::{AudioControl, Frame, Speaker, FRAME_SAMPLES};
use realtime_voiced::config;
use testkit::audio_rig::{alsa_config_path, Asoundrc, Pulse, Slave};
use testkit::signals::{speech, tone, write_raw, PARAGRAPH};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rusage() -> libc::rusage {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    r
}

fn process_cpu() -> Duration {
    let r = rusage();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32);
    tv(r.ru_utime) + tv(r.ru_stime)
}

#[derive(Default)]
struct Stages {
    echo: Duration,
    encode: Duration,
    decode: Duration,
    playback: Duration,
}

/// The whole path for one conversation, in one thread: near end (the user, plus the echo of
/// what we play) → canceller → encoder → decoder → jitter buffer → volume → far-end reference.
/// The canceller as the engine builds it: off, on, or on with local barge-in (the default),
/// which adds WebRTC's voice detector and runs the noise suppression as a processor of its own.
#[derive(Clone, Copy, PartialEq)]
enum Canceller {
    On,
    BargeIn,
    Off,
}

fn pipeline(seconds: usize, mode: Canceller, paced: bool) -> (Stages, u64) {
    let near_speech = speech_like(48_000 * seconds, 7, true);
    let far_speech = speech_like(48_000 * seconds, 11, true);
    // The service's side: the reply encoded beforehand, outside the measurement.
    let replies: Vec<Vec<u8>> = {
        let mut service = OpusEncoder::with_profile(OpusProfile::SERVICE).expect("encoder");
        let mut packet = [0u8; MAX_PACKET];
        far_speech
            .chunks_exact(FRAME_SAMPLES)
            .map(|c| {
                let frame: Frame = c.try_into().expect("frame");
                let n = service.encode(&frame, &mut packet).expect("encode");
                packet[..n].to_vec()
            })
            .collect()
    };
    let aec = mode != Canceller::Off;
    let mut canceller = if mode == Canceller::BargeIn {
        EchoCanceller::with_separate_denoiser(true, true)
    } else {
        EchoCanceller::new(aec, aec)
    }
    .expect("canceller");
    let mut enc = OpusEncoder::new().expect("encoder");
    let mut dec = OpusDecoder::new().expect("decoder");
    let (mut speaker, mut jb) = jitter::channel(48_000 * 30, JitterSettings::default());
    let (mut ref_tx, mut ref_rx) = rtrb::RingBuffer::<i16>::new(48_000 / 2);
    let mut packet = [0u8; MAX_PACKET];
    let mut decoded = [0i16; FRAME_SAMPLES * 6];
    let mut frame: Frame = [0; FRAME_SAMPLES];
    let mut block = [0i16; BLOCK];
    let mut far = [0i16; BLOCK];
    let mut period = [0i16; BLOCK];
    let mut stages = Stages::default();
    let mut allocations = 0;
    for (f, reply) in replies.iter().enumerate() {
        // Steady state from the second second on.
        let count_from = ALLOCATIONS.load(Ordering::Relaxed);
        let t0 = thread_cpu();
        for half in 0..2 {
            let at = f * FRAME_SAMPLES + half * BLOCK;
            // The microphone hears the user and, 40 ms late at half level, our own speaker.
            for (i, s) in block.iter_mut().enumerate() {
                let echo = if at + i >= 1920 {
                    far_speech[at + i - 1920] / 2
                } else {
                    0
                };
                *s = near_speech[at + i] / 4 + echo;
            }
            match ref_rx.read_chunk(BLOCK) {
                Ok(chunk) => {
                    let (a, b) = chunk.as_slices();
                    far[..a.len()].copy_from_slice(a);
                    far[a.len()..].copy_from_slice(b);
                    chunk.commit_all();
                }
                Err(_) => far.fill(0),
            }
            if let Some(c) = canceller.as_mut() {
                c.process(&mut block, &far).expect("process");
            }
            frame[half * BLOCK..(half + 1) * BLOCK].copy_from_slice(&block);
        }
        let t1 = thread_cpu();
        enc.encode(&frame, &mut packet).expect("encode");
        let t2 = thread_cpu();
        // The assistant's reply, as the service sent it.
        let got = dec.decode(reply, &mut decoded).expect("decode");
        let t3 = thread_cpu();
        jitter::push(&mut speaker, &decoded[..got]);
        for _ in 0..2 {
            jb.fill(&mut period);
            for s in period.iter_mut() {
                *s = (f32::from(*s) * 0.8) as i16;
            }
            jitter::push(&mut ref_tx, &period);
        }
        let t4 = thread_cpu();
        if paced {
            // As a live thread does: one frame, then nothing until the next is due.
            std::thread::sleep(Duration::from_millis(20));
        }
        stages.echo += t1 - t0;
        stages.encode += t2 - t1;
        stages.decode += t3 - t2;
        stages.playback += t4 - t3;
        if f >= 50 {
            allocations += ALLOCATIONS.load(Ordering::Relaxed) - count_from;
        }
    }
    (stages, allocations)
}

fn pct(cpu: Duration, audio: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / audio.as_secs_f64()
}

fn per_s(d: Duration, seconds: usize) -> f64 {
    d.as_secs_f64() * 1000.0 / seconds as f64
}

fn bench_pipeline() {
    println!("## 1. Pipeline in one thread (ms of CPU per second of audio)");
    println!();
    println!("| canceller, frames | AEC+NS | encode | decode | jitter+mix | total | % of one core | allocations/frame |");
    println!("|---|---|---|---|---|---|---|---|");
    // Back to back, then one frame per 20 ms as in a live session: between two frames other
    // threads and processes run, and the next frame starts with colder caches.
    for (paced, seconds) in [(false, 60), (true, 20)] {
        for mode in [Canceller::On, Canceller::BargeIn, Canceller::Off] {
            let (s, allocs) = pipeline(seconds, mode, paced);
            let total = s.echo + s.encode + s.decode + s.playback;
            println!(
                "| {}, {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} % | {:.3} |",
                match mode {
                    Canceller::On => "on",
                    Canceller::BargeIn => "on, local barge-in",
                    Canceller::Off => "off",
                },
                if paced {
                    format!("one per 20 ms, {seconds} s")
                } else {
                    format!("back to back, {seconds} s")
                },
                per_s(s.echo, seconds),
                per_s(s.encode, seconds),
                per_s(s.decode, seconds),
                per_s(s.playback, seconds),
                per_s(total, seconds),
                pct(total, Duration::from_secs(seconds as u64)),
                allocs as f64 / ((seconds * 50 - 50) as f64),
            );
        }
    }
    println!();
}

/// The jitter buffer taking back delay (a paced source, 30 ms over its target every 2 s) from
/// spoken words (pauses dropped, sound shortened), a tone (shortened only) and loud noise (never
/// cut: the search runs and finds no repeat): CPU time of a period that cuts (a pause dropped
/// or sound shortened) against one that does not, and how much is taken back.
fn bench_shortening(dir: &Path) {
    const PERIOD: usize = 480;
    println!("## 1b. Jitter buffer: shortening sound to take back delay (µs per 10 ms period)");
    println!();
    println!("| signal | period not cut | period cut | cuts/s | ms taken back/s | allocations |");
    println!("|---|---|---|---|---|---|");
    let seconds = 60;
    for (name, signal) in [
        ("spoken words (espeak-ng)", speech(dir, PARAGRAPH)),
        ("180 Hz tone", tone(180.0, 8000.0, 48_000)),
        ("white noise", white_noise(48_000, 5, 8192.0)),
    ] {
        let (mut tx, mut jb) = jitter::channel(48_000, JitterSettings::default());
        jb.set_paced(true);
        let mut at = 0;
        let mut feed = |tx: &mut rtrb::Producer<i16>, n: usize| {
            for _ in 0..n {
                jitter::push(tx, &signal[at..at + PERIOD.min(signal.len() - at)]);
                at = (at + PERIOD) % (signal.len() - signal.len() % PERIOD);
            }
        };
        feed(&mut tx, 9);
        let mut out = [0i16; PERIOD];
        let (mut plain, mut plain_n) = (Duration::ZERO, 0u32);
        let (mut cut, mut cut_n) = (Duration::ZERO, 0u32);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for i in 0..seconds * 100 {
            let shed = jb.shed_samples();
            let t = thread_cpu();
            jb.fill(&mut out);
            let spent = thread_cpu().saturating_sub(t);
            if jb.shed_samples() > shed {
                cut += spent;
                cut_n += 1;
            } else {
                plain += spent;
                plain_n += 1;
            }
            feed(&mut tx, if i % 200 == 0 { 4 } else { 1 });
        }
        let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {allocs} |",
            plain.as_secs_f64() * 1e6 / f64::from(plain_n.max(1)),
            cut.as_secs_f64() * 1e6 / f64::from(cut_n.max(1)),
            f64::from(cut_n) / seconds as f64,
            jb.shed_samples() as f64 / 48.0 / seconds as f64,
        );
    }
    println!();
}

/// One live session in this process: the engine on `capture`/`playback`, a transport stand-in
/// that sends every microphone frame through Opus and back to the speaker. `talk` false is an
/// idle daemon instead: devices open, capture off, no transport. Prints one line,
/// `LIVE <cpu ms> <mic frames> <allocations> <xruns> <xruns> <peak rss KiB> <capture ms>
/// <transport ms> <playback ms>`, over `seconds` of audio.
fn live(capture: &str, playback: &str, aec: bool, talk: bool, seconds: u64) {
    let cfg = config::Audio {
        capture_device: capture.into(),
        playback_device: playback.into(),
        echo_cancellation: aec,
        noise_suppression: aec,
        // Local barge-in on, as by default, so that its cost is in the figures, but never
        // firing: the microphone's voice is never in the speaker, and without a daemon to flush
        // the speaker after a barge-in, what this stand-in sends on would pile up unplayed.
        barge_in_threshold_dbfs: 0.0,
        ..config::Audio::default()
    };
    let engine = match Engine::start_with(
        &cfg,
        EngineOptions {
            capture_on: talk,
            ..EngineOptions::default()
        },
    ) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            println!("ERROR {e}");
            return;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let transport = talk.then(|| {
        let engine = engine.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("transport".into())
            .spawn(move || {
                let mic = engine.microphone();
                let mut rx = mic.blocking_lock();
                let mut enc = OpusEncoder::new().expect("encoder");
                let mut dec = OpusDecoder::new().expect("decoder");
                let mut packet = [0u8; MAX_PACKET];
                let mut out = [0i16; FRAME_SAMPLES * 6];
                while !stop.load(Ordering::Relaxed) {
                    let Some(frame) = rx.blocking_recv() else {
                        break;
                    };
                    let n = enc.encode(frame.samples(), &mut packet).expect("encode");
                    let m = dec.decode(&packet[..n], &mut out).expect("decode");
                    engine.push(&out[..m]);
                }
            })
            .expect("transport thread")
    });
    // Let the devices settle (a paced capture may start late, an unpaced one bursts) first.
    std::thread::sleep(Duration::from_secs(3));
    let before = engine.stats();
    let threads0 = thread_cpu_ns();
    let allocs0 = ALLOCATIONS.load(Ordering::Relaxed);
    let cpu0 = process_cpu();
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = process_cpu() - cpu0;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs0;
    let threads = thread_cpu_ns();
    let thread_ms = |name: &str| -> f64 {
        let was = |n: &str| threads0.iter().find(|t| t.0 == n).map_or(0, |t| t.1);
        threads
            .iter()
            .filter(|t| t.0.starts_with(name))
            .map(|t| t.1.saturating_sub(was(&t.0)) as f64 / 1e6)
            .sum()
    };
    let after = engine.stats();
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = transport {
        let _ = t.join();
    }
    println!(
        "LIVE {:.3} {} {} {} {} {} {:.3} {:.3} {:.3}",
        cpu.as_secs_f64() * 1000.0,
        after.capture_frames - before.capture_frames,
        allocs,
        after.capture_xruns - before.capture_xruns,
        after.playback_xruns - before.playback_xruns,
        peak_rss_kib(),
        thread_ms("rtv-capture"),
        thread_ms("transport"),
        thread_ms("rtv-playback"),
    );
}

const LIVE_SECONDS: u64 = 10;

/// Each thread of this process and the CPU time it has run, in ns (`schedstat`).
fn thread_cpu_ns() -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            let ns = read("schedstat")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (
                format!(
                    "{} {}",
                    read("comm").trim(),
                    t.file_name().to_string_lossy()
                ),
                ns,
            )
        })
        .collect()
}

/// This process's own peak RSS (VmHWM). `ru_maxrss` is carried across fork and exec, so in a
/// child it would report the parent's size.
fn peak_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if let Ok(spec) = std::env::var("RTV_BENCH_LIVE") {
        let parts: Vec<&str> = spec.split(',').collect();
        if let [capture, playback, aec, mode] = parts[..] {
            live(capture, playback, aec == "on", mode != "idle", LIVE_SECONDS);
        }
        return;
    }
    println!(
        "# audio_pipeline ({} logical CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    bench_pipeline();
    let Ok(dir) = tempfile::tempdir() else {
        println!("no temporary directory");
        return;
    };
    bench_shortening(dir.path());
    bench_live(dir.path());
    println!(
        "## 3. Peak RSS of the benchmark process itself (test signals included): {:.1} MiB",
        rusage().ru_maxrss as f64 / 1024.0
    );
}

/// Runs one live session in a child process (alsa-lib reads its configuration once per
/// process, and the child's peak RSS is that of the engine alone); returns its figures.
fn live_child(dir: &Path, spec: &str) -> Result<Vec<f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .env("RTV_BENCH_LIVE", spec)
        .env("ALSA_CONFIG_PATH", alsa_config_path(dir))
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("LIVE ") || l.starts_with("ERROR "))
        .ok_or("no result")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() == 9 {
        Ok(f)
    } else {
        Err(line.to_string())
    }
}

/// Live runs repeated: the machine is shared, single runs vary by ±0.5 points.
const LIVE_RUNS: usize = 3;

/// `LIVE_RUNS` children; the table row with the median run's figures and the range of totals.
fn live_row(dir: &Path, spec: &str, label: &str) -> String {
    let mut runs = Vec::new();
    for _ in 0..LIVE_RUNS {
        match live_child(dir, spec) {
            Ok(f) => runs.push(f),
            Err(e) => return format!("| {label} | {e} |"),
        }
    }
    runs.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let f = &runs[runs.len() / 2];
    let secs = LIVE_SECONDS as f64;
    let per_s = |ms: f64| ms / secs;
    format!(
        "| {label} | {:.2} ms | **{:.2} %** ({:.2}–{:.2}) | {:.1} / {} / {:.1} | {:.1} | {:.1} | {} / {} | {:.1} MiB |",
        per_s(f[0]),
        per_s(f[0]) / 10.0,
        per_s(runs[0][0]) / 10.0,
        per_s(runs[runs.len() - 1][0]) / 10.0,
        per_s(f[6]),
        if spec.ends_with("idle") {
            "–".to_string()
        } else {
            format!("{:.1}", per_s(f[7]))
        },
        per_s(f[8]),
        f[1] / secs,
        f[2] / secs,
        f[3],
        f[4],
        f[5] / 1024.0
    )
}

fn bench_live(dir: &Path) {
    println!("## 2. Live session through alsa-lib ({LIVE_SECONDS} s, a child process each, median of {LIVE_RUNS})");
    println!();
    println!("Microphone → engine → Opus encode → Opus decode → speaker, all frames, capture on;");
    println!(
        "\"idle\": the devices open and running, capture off (a daemon between conversations)."
    );
    println!();
    println!("| devices, canceller | process CPU per s of audio | % of one core (range) | threads: capture / transport / playback, ms per s | mic frames/s | allocations/s | xruns capture / playback | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|");
    // alsa-lib straight to plugins, no sound server: the `file` plugin reads a speech-like
    // recording; the capture thread's guard paces a device that has no clock.
    let infile = dir.join("speech.raw");
    write_raw(&infile, &speech_like(48_000 * 60, 3, true));
    Asoundrc::new()
        .reads_file("speech", Slave::Null, &infile)
        .device("nullout", Slave::Null)
        .write(dir);
    for (spec, label) in [
        ("speech,nullout,on,talk", "file/null plugins, on"),
        ("speech,nullout,off,talk", "file/null plugins, off"),
        ("speech,nullout,on,idle", "file/null plugins, on, idle"),
    ] {
        println!("{}", live_row(dir, spec, label));
    }
    if !testkit::proc::have("pulseaudio") {
        println!("| PulseAudio null sink | skipped: `pulseaudio` not installed |");
    } else {
        let pulse = Pulse::start(dir);
        Asoundrc::new()
            .device("src", Slave::PulseMonitor(&pulse))
            .device("sink", Slave::PulseSink(&pulse))
            .write(dir);
        for (spec, label) in [
            ("src,sink,on,talk", "PulseAudio null sink, on"),
            ("src,sink,off,talk", "PulseAudio null sink, off"),
        ] {
            println!("{}", live_row(dir, spec, label));
        }
    }
    println!();
    println!(
        "(a PulseAudio server's own CPU is not counted; on the device ALSA talks to the card)"
    );
    println!();
}
