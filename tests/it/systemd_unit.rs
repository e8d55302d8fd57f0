//! The packaged unit passes `systemd-analyze verify` without a word, scores at most 1.5 in
//! `systemd-analyze security`, and leaves the daemon's libraries what they read at start.

use std::process::Command;

use testkit::proc::have;

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/realtime-voiced.service"
);

/// A copy of the unit whose ExecStart points at the built binary (verify wants it to exist).
fn unit_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(UNIT).expect("read the unit");
    assert!(unit.contains("\nExecStart=/usr/bin/realtime-voiced\n"));
    assert!(unit.contains("\nType=notify\n"));
    let copy = unit.replace(
        "\nExecStart=/usr/bin/realtime-voiced\n",
        &format!("\nExecStart={}\n", crate::DAEMON),
    );
    let path = dir.join("realtime-voiced.service");
    std::fs::write(&path, copy).expect("write the copy");
    path
}

#[test]
fn unit_verifies_cleanly() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (package systemd)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_copy(dir.path());
    let o = Command::new("timeout")
        .args(["60", "systemd-analyze", "verify", "--man=no"])
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && stderr.trim().is_empty(),
        "verify: {stderr}"
    );
}

#[test]
fn unit_is_hardened() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (package systemd)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_copy(dir.path());
    let o = Command::new("timeout")
        .args([
            "60",
            "systemd-analyze",
            "security",
            "--offline=true",
            "--no-pager",
        ])
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze");
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score: {out}{}", String::from_utf8_lossy(&o.stderr)));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line}"));
    println!("systemd-analyze security: {score}");
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{out}");
}

/// libopus on 32-bit ARM chooses its NEON code by reading /proc/cpuinfo; `ProcSubset=pid` hides
/// that file, and Opus then runs without it (BENCHMARKS.md, "Opus on armhf"). The booted device
/// test checks the same from inside the running service (`sandbox-cpuinfo`).
#[test]
fn the_sandbox_leaves_proc_cpuinfo_to_libopus() {
    let unit = std::fs::read_to_string(UNIT).expect("read the unit");
    let subset: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ProcSubset="))
        .collect();
    assert!(
        subset.iter().all(|l| *l == "ProcSubset=all"),
        "the unit hides /proc/cpuinfo: {subset:?}"
    );
}
