//! The command line as a user meets it: the built binary, real files, real signals.

mod harness;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_realtime-voiced");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run realtime-voiced")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write file");
    path
}

fn shipped_config() -> String {
    format!("{}/config/realtime-voiced.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("realtime-voiced {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("check-config") && help.contains("--config"),
        "{help}"
    );
}

#[test]
fn check_config_accepts_the_shipped_file_and_prints_it() {
    let out = run(&["check-config", "--config", &shipped_config()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(": valid"), "{stdout}");
    assert!(
        stdout.contains("[api]") && stdout.contains("model = \"gpt-realtime\""),
        "{stdout}"
    );
    assert!(stdout.contains("API key: none found"), "{stdout}");
}

#[test]
fn check_config_rejects_bad_files_with_exit_78_and_located_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(
        dir.path(),
        "bad.toml",
        "[audio]\nvolume = 1.5\n\n[gpio]\nbutton_pin = 99\n",
    );
    let out = run(
        &["check-config", "--config", bad.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].ends_with("bad.toml:2:10: `audio.volume`: must be between 0.0 and 1.0, got 1.5"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("bad.toml:5:14: `gpio.button_pin`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));

    let unknown = write(
        dir.path(),
        "unknown.toml",
        "[transport]\nknd = \"websocket\"\n",
    );
    let out = run(
        &["check-config", "--config", unknown.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("unknown.toml:2:1: "),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["check-config", "--config", "/nonexistent/x.toml"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("cannot read configuration /nonexistent/x.toml"));
}

#[test]
fn secrets_never_reach_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write(dir.path(), "api-key", "sk-test-SECRET-KEY-123\n");
    let cfg = write(
        dir.path(),
        "secrets.toml",
        &format!(
            "[api]\napi_key_file = \"{}\"\ntoken_url_headers = {{ Authorization = \"Bearer HEADER-SECRET\" }}\n\
             [[transport.ice_servers]]\nurls = [\"turn:127.0.0.1:3478\"]\nusername = \"u\"\ncredential = \"TURN-SECRET\"\n",
            key.display()
        ),
    );
    let out = run(
        &["check-config", "--config", cfg.to_str().expect("utf-8")],
        &[("OPENAI_API_KEY", "sk-ENV-SECRET")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    for secret in [
        "SECRET-KEY-123",
        "HEADER-SECRET",
        "TURN-SECRET",
        "ENV-SECRET",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    assert!(all.contains("<redacted>"));
    assert!(
        all.contains(&format!(
            "API key: from api.api_key_file ({})",
            key.display()
        )),
        "{all}"
    );

    // A bad value in a secret field is reported by key, never by value.
    let cfg = write(
        dir.path(),
        "bad-secret.toml",
        "[[transport.ice_servers]]\nurls = [\"turn:x\"]\nusername = \"u\"\ncredential = 987654321\n",
    );
    let out = run(
        &["check-config", "--config", cfg.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        !text(&out.stderr).contains("987654321"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn daemon_refuses_an_invalid_config_with_one_line_and_exit_78() {
    let out = run(&["--config", "/nonexistent/realtime-voiced.toml"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/realtime-voiced.toml"));
}

/// A configuration for running the daemon here: session bus, no GPIO.
fn dev_config(dir: &Path) -> PathBuf {
    write(
        dir,
        "dev.toml",
        "[dbus]\nbus = \"session\"\n[audio]\nearcons = false\n[transport]\nconnect_timeout_ms = 1000\n",
    )
}

fn spawn_daemon(config: &Path, bus: &harness::Bus, extra: &[&str]) -> Child {
    let mut args = vec!["--config", config.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    Command::new(BIN)
        .args(&args)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env_remove("OPENAI_API_KEY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon")
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn stop_with(signal: i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dev_config(dir.path());
    let bus = harness::Bus::start(dir.path());
    let mut child = spawn_daemon(&config, &bus, &["--start"]);
    // Let it start and begin a conversation attempt before the signal.
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "daemon exited early"
    );
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0);
    let status = wait_with_deadline(&mut child, Duration::from_secs(5)).expect("daemon exited");
    let took = sent.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
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

#[test]
fn log_level_from_config_and_rust_log_overrides_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quiet = write(
        dir.path(),
        "quiet.toml",
        "[log]\nlevel = \"warn\"\n[dbus]\nbus = \"session\"\n",
    );
    let capture = |rust_log: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["--config", quiet.to_str().expect("utf-8")])
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(spec) = rust_log {
            cmd.env("RUST_LOG", spec);
        }
        let mut child = cmd.spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        wait_with_deadline(&mut child, Duration::from_secs(5)).expect("exited");
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        stderr
    };
    let warn_only = capture(None);
    assert!(
        !warn_only.contains("starting"),
        "info line at level warn:\n{warn_only}"
    );
    let overridden = capture(Some("realtime_voiced=info"));
    assert!(
        overridden.contains("starting"),
        "RUST_LOG did not override:\n{overridden}"
    );
}
