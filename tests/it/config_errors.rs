//! A configuration that is wrong: `check-config` and the daemon refuse it with exit code 78 and
//! lines that say where.

use crate::cli::{run, text, write};

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
fn daemon_refuses_an_invalid_config_with_one_line_and_exit_78() {
    let out = run(&["--config", "/nonexistent/realtime-voiced.toml"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/realtime-voiced.toml"));
}
