//! The command line as a user meets it: the built binary, real files, real signals. Errors in
//! a configuration are `config_errors`; stopping on a signal is `shutdown_signals`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testkit::Proc;

use crate::DAEMON;

/// Runs the daemon's binary with `args`, with no API key from the environment.
pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(DAEMON);
    cmd.args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run realtime-voiced")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
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
        stdout.contains("[api]") && stdout.contains("model = \"gpt-realtime-2.1\""),
        "{stdout}"
    );
    assert!(stdout.contains("API key: none found"), "{stdout}");
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
             token_url = \"https://USER-SECRET:PW-SECRET@backend.example/token?key=QUERY-SECRET\"\n\
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
        "USER-SECRET",
        "PW-SECRET",
        "QUERY-SECRET",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    assert!(all.contains("<redacted>"));
    assert!(
        all.contains("https://<redacted>@backend.example/token?key=<redacted>"),
        "{all}"
    );
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
fn log_level_from_config_and_rust_log_overrides_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quiet = write(
        dir.path(),
        "quiet.toml",
        "[log]\nlevel = \"warn\"\n[dbus]\nbus = \"session\"\n",
    );
    let capture = |rust_log: Option<&str>| {
        let mut cmd = Command::new(DAEMON);
        cmd.args(["--config", quiet.to_str().expect("utf-8")])
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(spec) = rust_log {
            cmd.env("RUST_LOG", spec);
        }
        let mut daemon = Proc::spawn(&mut cmd);
        std::thread::sleep(Duration::from_millis(500));
        daemon.signal(libc::SIGTERM);
        daemon.wait_exit(Duration::from_secs(5)).expect("exited");
        let mut stderr = String::new();
        if let Some(mut e) = daemon.child.stderr.take() {
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
