//! No secret reaches the log at any level: the daemon at `log.level = "trace"`, and with
//! `RUST_LOG=trace`, talks to the simulator over both transports; its whole log is searched
//! for the API key and the short-lived tokens. The key it was given in the environment is not
//! left readable in `/proc/PID/environ`.

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::bus::Bus;
use testkit::sim::SimProcess;
use testkit::{wait_for, Proc};

use crate::DAEMON;

const KEY: &str = "sk-secret-log-test-0123456789";

fn converse(dir: &std::path::Path, transport: &str, rust_log: Option<&str>) -> String {
    let bus = Bus::session(dir);
    let sim = SimProcess::start(dir, 0, &[]);
    let config = dir.join(format!("{transport}.toml"));
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\n[transport]\nkind = \"{transport}\"\nallow_loopback = true\n\
             ice_servers = []\nfallback = false\n[audio]\ncapture_device = \"null\"\n\
             playback_device = \"null\"\n[dbus]\nbus = \"session\"\n[log]\nlevel = \"trace\"\n",
            sim.base_url()
        ),
    )
    .expect("config");
    let log = dir.join(format!("{transport}-{}.log", rust_log.is_some()));
    let mut cmd = Command::new(DAEMON);
    cmd.args(["--config", config.to_str().expect("utf-8"), "--start"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("OPENAI_API_KEY", KEY)
        .env("STATE_DIRECTORY", dir.join("state"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    if let Some(spec) = rust_log {
        cmd.env("RUST_LOG", spec);
    }
    let mut daemon = Proc::spawn(&mut cmd);
    wait_for(Duration::from_secs(20), "a configured session", || {
        sim.logged().contains("session configured").then_some(())
    });
    // The key from the environment was used, and is no longer in the process's environment.
    let environ = std::fs::read(format!("/proc/{}/environ", daemon.pid())).expect("environ");
    assert!(
        !String::from_utf8_lossy(&environ).contains(KEY),
        "the key is readable in /proc/PID/environ"
    );
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(5)).expect("exits");
    std::fs::read_to_string(&log).expect("log")
}

#[test]
fn no_secret_reaches_the_log_at_trace_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    for transport in ["websocket", "webrtc"] {
        for rust_log in [None, Some("trace")] {
            let log = converse(dir.path(), transport, rust_log);
            let lines = log.lines().count();
            assert!(
                log.contains("DEBUG"),
                "{transport}: a trace-level log ({lines} lines):\n{log}"
            );
            eprintln!("{transport}, RUST_LOG={rust_log:?}: {lines} lines, no secret");
            for secret in [KEY, "ek_sim_", "Bearer"] {
                assert!(
                    !log.contains(secret),
                    "{transport}, RUST_LOG={rust_log:?}: `{secret}` in the log:\n{}",
                    log.lines()
                        .filter(|l| l.contains(secret))
                        .take(3)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }
}
