//! The sd_notify conversation as systemd would see it: a datagram socket stands in for
//! `NOTIFY_SOCKET`, a private session bus for the system bus.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::bus::{Bus, NAME, PATH};
use testkit::proc::{have, run, text};
use testkit::Proc;

use crate::DAEMON;

struct Notices {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notices {
    fn bind(path: &std::path::Path) -> Notices {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Notices {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads datagrams until one has a line for which `want` holds; returns that datagram.
    fn until(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(&want) {
                    return Some(msg);
                }
            }
        }
        None
    }
}

fn daemon(
    dir: &std::path::Path,
    bus: &str,
    config: &std::path::Path,
    notify: &std::path::Path,
) -> Proc {
    let log = std::fs::File::create(dir.join("daemon.log")).expect("log file");
    Proc::spawn(
        Command::new(DAEMON)
            .arg("--config")
            .arg(config)
            .env("DBUS_SESSION_BUS_ADDRESS", bus)
            .env("NOTIFY_SOCKET", notify)
            .env("WATCHDOG_USEC", "200000")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(log),
    )
}

#[test]
fn ready_status_watchdog_reload_and_stop() {
    if !have("dbus-daemon") || !have("gdbus") {
        eprintln!(
            "SKIPPED: dbus-daemon and gdbus are needed (packages dbus-daemon, libglib2.0-bin)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Bus::session(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[dbus]\nbus = \"session\"\n[audio]\ncapture_device = \"null\"\nplayback_device = \"null\"\n").expect("write config");
    let notify = dir.path().join("notify");
    let mut notices = Notices::bind(&notify);
    let mut d = daemon(dir.path(), &bus.address, &config, &notify);
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    let ready = notices.until(Duration::from_secs(15), |l| l == "READY=1");
    assert!(ready.is_some(), "no READY=1: {:?} {}", notices.seen, log());
    // READY=1 comes only once the name is owned.
    assert!(
        bus.name_has_owner(NAME),
        "READY=1 before the bus name was owned"
    );
    assert!(
        ready.is_some_and(|m| m.contains("STATUS=idle")),
        "{:?}",
        notices.seen
    );

    // The watchdog is fed at half of WATCHDOG_USEC (every 100 ms here).
    let start = Instant::now();
    for _ in 0..5 {
        assert!(
            notices
                .until(Duration::from_secs(2), |l| l == "WATCHDOG=1")
                .is_some(),
            "WATCHDOG=1 missing: {:?}",
            notices.seen
        );
    }
    assert!(start.elapsed() < Duration::from_secs(3));

    // STATUS follows the state.
    let o = run(&[
        "gdbus",
        "call",
        "--address",
        &bus.address,
        "-d",
        NAME,
        "-o",
        PATH,
        "-m",
        "io.thrive.RealtimeVoice1.Start",
    ]);
    // No key here: Start is refused as NotConfigured, and the error state reaches STATUS=.
    assert!(
        !o.status.success() && text(&o).contains("NotConfigured"),
        "{}",
        text(&o)
    );
    let status = notices.until(Duration::from_secs(5), |l| l.starts_with("STATUS=error: "));
    assert!(
        status.is_some_and(|m| m.contains("no API key")),
        "{:?}",
        notices.seen
    );

    // SIGHUP with a good file: RELOADING=1 (with the monotonic time) then READY=1.
    std::fs::write(
        &config,
        "[dbus]\nbus = \"session\"\n[audio]\ncapture_device = \"null\"\nplayback_device = \"null\"\n[log]\nlevel = \"debug\"\n",
    )
    .expect("write");
    d.signal(libc::SIGHUP);
    let reloading = notices.until(Duration::from_secs(5), |l| l == "RELOADING=1");
    assert!(
        reloading
            .as_deref()
            .is_some_and(|m| m.contains("MONOTONIC_USEC=")),
        "{:?}",
        notices.seen
    );
    assert!(
        notices
            .until(Duration::from_secs(5), |l| l == "READY=1")
            .is_some(),
        "{:?}",
        notices.seen
    );
    assert!(log().contains("configuration reloaded"), "{}", log());

    // SIGHUP with a broken file: refused, logged, the daemon keeps running.
    std::fs::write(&config, "[audio]\nvolume = 7.5\n").expect("write");
    d.signal(libc::SIGHUP);
    assert!(notices
        .until(Duration::from_secs(5), |l| l == "RELOADING=1")
        .is_some());
    assert!(notices
        .until(Duration::from_secs(5), |l| l == "READY=1")
        .is_some());
    assert!(
        d.alive(),
        "the daemon died on a broken configuration: {}",
        log()
    );
    assert!(log().contains("configuration not reloaded"), "{}", log());
    assert!(
        log().contains("audio.volume"),
        "the error does not name the key: {}",
        log()
    );
    assert!(
        notices
            .until(Duration::from_secs(2), |l| l == "WATCHDOG=1")
            .is_some(),
        "the watchdog stopped after a refused reload"
    );
    assert!(bus.name_has_owner(NAME));

    // SIGTERM: STOPPING=1 and a clean exit.
    d.signal(libc::SIGTERM);
    assert!(
        notices
            .until(Duration::from_secs(5), |l| l == "STOPPING=1")
            .is_some(),
        "{:?}",
        notices.seen
    );
    let status = d
        .wait_exit(Duration::from_secs(5))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}: {}", log());
    assert!(!log().contains("panicked"), "{}", log());
}

#[test]
fn no_bus_means_no_ready_and_one_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[dbus]\nbus = \"session\"\n[audio]\ncapture_device = \"null\"\nplayback_device = \"null\"\n").expect("write config");
    let notify = dir.path().join("notify");
    let mut notices = Notices::bind(&notify);
    let missing = format!("unix:path={}", dir.path().join("no-bus").display());
    let mut d = daemon(dir.path(), &missing, &config, &notify);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("exits without a bus");
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("D-Bus session bus"), "{log}");
    assert!(notices
        .until(Duration::from_millis(300), |l| l == "READY=1")
        .is_none());
}
