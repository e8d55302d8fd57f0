//! Start/Stop over WebRTC, a thousand times, through the built daemon: does anything grow?
//!
//! `cargo build --release -p realtime-sim && cargo bench --bench soak` (dbus-daemon; no sound
//! card: ALSA's null devices). Each cycle calls Start over D-Bus, waits for `listening`, calls
//! Stop and waits for `idle`. Prints the daemon's resident memory (VmRSS), open file
//! descriptors and threads at cycles 0, 250, 500, 750 and 1,000. `SOAK_CYCLES` sets the count.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::bus::Bus;
use testkit::sim::SimProcess;
use testkit::{wait_for, Proc};

const DAEMON: &str = env!("CARGO_BIN_EXE_realtime-voiced");

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn main() {
    let cycles: usize = std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bus = Bus::session(d);
    let sim = SimProcess::start(d, 0, &[]);
    let config = d.join("soak.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\n[transport]\nallow_loopback = true\nice_servers = []\n\
             [audio]\ncapture_device = \"null\"\nplayback_device = \"null\"\nearcons = false\n\
             [dbus]\nbus = \"session\"\n[log]\nlevel = \"warn\"\n",
            sim.base_url()
        ),
    )
    .expect("config");
    let daemon = Proc::spawn(
        Command::new(DAEMON)
            .args(["--config", config.to_str().expect("utf-8")])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("OPENAI_API_KEY", "sk-soak")
            .env("STATE_DIRECTORY", d.join("state"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("daemon.log")).expect("log")),
    );
    let pid = daemon.pid();
    wait_for(Duration::from_secs(20), "the daemon on the bus", || {
        bus.property("State")
    });
    println!("soak: {cycles} Start/Stop cycles over WebRTC (null sound devices)");
    println!(
        "{:>6} {:>10} {:>5} {:>8} {:>9}",
        "cycle", "RSS KiB", "fds", "threads", "elapsed"
    );
    let started = Instant::now();
    let report = |cycle: usize| {
        println!(
            "{cycle:>6} {:>10} {:>5} {:>8} {:>8.0}s",
            status_kib(pid, "VmRSS"),
            fds(pid),
            status_kib(pid, "Threads"),
            started.elapsed().as_secs_f64()
        );
    };
    report(0);
    for cycle in 1..=cycles {
        assert!(
            bus.call("Start", &[]).status.success(),
            "Start, cycle {cycle}"
        );
        bus.wait_state("listening", Duration::from_secs(20));
        assert!(
            bus.call("Stop", &[]).status.success(),
            "Stop, cycle {cycle}"
        );
        bus.wait_state("idle", Duration::from_secs(20));
        if cycle % (cycles / 4).max(1) == 0 {
            report(cycle);
        }
    }
    println!(
        "peak RSS {} KiB; simulator calls {}",
        status_kib(pid, "VmHWM"),
        sim.stats()["calls"]
    );
    drop(daemon);
}
