//! SIGTERM and SIGINT stop the daemon cleanly and quickly, even mid-connect.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::bus::Bus;
use testkit::Proc;

use crate::cli::write;
use crate::DAEMON;

/// A configuration for running the daemon here: session bus, no GPIO.
fn dev_config(dir: &Path) -> std::path::PathBuf {
    write(
        dir,
        "dev.toml",
        "[dbus]\nbus = \"session\"\n[audio]\nearcons = false\n[transport]\nconnect_timeout_ms = 1000\n",
    )
}

fn stop_with(signal: i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dev_config(dir.path());
    let bus = Bus::session(dir.path());
    let mut daemon = Proc::spawn(
        Command::new(DAEMON)
            .args(["--config", config.to_str().expect("utf-8"), "--start"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("OPENAI_API_KEY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    // Let it start and begin a conversation attempt before the signal.
    std::thread::sleep(Duration::from_millis(700));
    assert!(daemon.alive(), "daemon exited early");
    let sent = Instant::now();
    assert!(daemon.signal(signal), "kill({signal}) failed");
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("daemon exited");
    let took = sent.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = daemon.child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(
        status.code(),
        Some(0),
        "exit status for signal {signal}: {status:?}\n{stderr}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
    assert!(stderr.contains("stopping on signal"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sigterm_stops_cleanly_within_two_seconds() {
    stop_with(libc::SIGTERM);
}

#[test]
fn sigint_stops_cleanly_within_two_seconds() {
    stop_with(libc::SIGINT);
}
