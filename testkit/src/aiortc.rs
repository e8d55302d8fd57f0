//! aiortc, a WebRTC stack we did not write, in a Python virtualenv: the service stand-in in
//! `tests/peers/` and the client in `benches/peers/` run on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::proc::Proc;

/// The virtualenv's Python, whether or not it exists yet.
pub fn venv_python() -> PathBuf {
    crate::root().join("target/venv/bin/python")
}

/// A Python with aiortc and aiohttp, in a virtualenv under `target/` (created on first use).
/// `Err` says why there is none; it starts with `PIP_UNREACHABLE` when PyPI could not be
/// reached, the one reason to skip rather than fail.
pub fn python() -> Result<PathBuf, String> {
    let root = crate::root();
    let venv = root.join("target/venv");
    let python = venv_python();
    let has_aiortc = |p: &Path| {
        Command::new(p)
            .args(["-c", "import aiortc, aiohttp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    // Several tests (or test processes) may get here at once: one installs, the others wait.
    std::fs::create_dir_all(root.join("target")).map_err(|e| format!("target dir: {e}"))?;
    let lock_path = root.join("target/venv.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| format!("lock: {e}"))?;
    // SAFETY: flock on a file descriptor we own, released when `lock` is dropped.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    if python.exists() && has_aiortc(&python) {
        return Ok(python);
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err("python3 -m venv failed (is python3-venv installed?)".into());
    }
    let mut pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "--timeout",
            "20",
            "aiortc",
            "aiohttp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    let mut err = String::new();
    if let Some(mut stderr) = pip.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut err);
    }
    let status = pip.wait().map_err(|e| format!("pip: {e}"))?;
    if !status.success() || !has_aiortc(&python) {
        return Err(format!(
            "PIP_UNREACHABLE: pip install aiortc aiohttp failed: {}",
            err.trim()
        ));
    }
    Ok(python)
}

/// The aiortc stand-in service (`tests/peers/aiortc_service.py`), listening on 127.0.0.1;
/// returns it and its base URL.
pub fn start_service() -> Result<(Proc, String), String> {
    start_service_with(&[])
}

/// The same, with options for the script (`--lose-every N`).
pub fn start_service_with(args: &[&str]) -> Result<(Proc, String), String> {
    let python = python()?;
    let script = crate::root().join("tests/peers/aiortc_service.py");
    let child = Command::new(python)
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the aiortc service: {e}"))?;
    let mut service = Proc { child };
    let port = service
        .line_starting("PORT ", Duration::from_secs(30))
        .ok_or("the aiortc service did not start")?;
    Ok((service, format!("http://127.0.0.1:{port}/v1")))
}

/// The aiortc service and its base URL; returns from the calling test when PyPI is out of
/// reach (aiortc cannot be installed), fails it on anything else.
#[macro_export]
macro_rules! aiortc_service_or_skip {
    ($($arg:expr),* $(,)?) => {
        match $crate::aiortc::start_service_with(&[$($arg),*]) {
            Ok(service) => service,
            Err(e) if e.starts_with("PIP_UNREACHABLE") => {
                eprintln!("SKIPPED: aiortc is not installable here ({e})");
                return;
            }
            Err(e) => panic!("{e}"),
        }
    };
}

/// What the aiortc service saw (its `/stats`), as JSON.
pub async fn fetch_stats(base_url: &str) -> serde_json::Value {
    let root = base_url.trim_end_matches("/v1");
    let body = reqwest::get(format!("{root}/stats"))
        .await
        .expect("stats")
        .text()
        .await
        .expect("stats body");
    serde_json::from_str(&body).expect("stats json")
}
