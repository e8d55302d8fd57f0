//! A private dbus-daemon, shaped like the system bus (the stock policy plus the package's) or
//! like a session bus, and what the tests ask it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::proc::{run, text, Proc};
use crate::wait::wait_for;

/// The daemon's bus name and interface.
pub const NAME: &str = "io.thrive.RealtimeVoice1";
/// The daemon's object path.
pub const PATH: &str = "/io/thrive/RealtimeVoice1";

/// The package's bus policy, as shipped.
pub fn package_policy() -> PathBuf {
    crate::root().join("packaging/dbus/io.thrive.RealtimeVoice1.conf")
}

/// A private dbus-daemon, killed when dropped.
pub struct Bus {
    pub address: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub proc: Proc,
}

impl Bus {
    /// A bus configured like the system bus: the stock default policy plus the package's,
    /// listening on `dir/system_bus_socket`. Other users must be able to reach `dir`.
    pub fn system(dir: &Path) -> Bus {
        let policy_dir = dir.join("system.d");
        std::fs::create_dir_all(&policy_dir).expect("policy dir");
        std::fs::copy(
            package_policy(),
            policy_dir.join("io.thrive.RealtimeVoice1.conf"),
        )
        .expect("copy the policy");
        let stock = std::fs::read_to_string("/usr/share/dbus-1/system.conf")
            .expect("read /usr/share/dbus-1/system.conf (package dbus)");
        // The stock policies, without the parts that need a real system (user, fork, pid file,
        // activation helper, syslog, includes of the host's policy folders).
        let start = stock
            .find("<policy context=\"default\">")
            .expect("stock default policy");
        let end = stock.rfind("</policy>").expect("end of the stock policies") + "</policy>".len();
        let socket = dir.join("system_bus_socket");
        let config = dir.join("system-bus.conf");
        let xml = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={}</listen>
  {}
  <includedir>{}</includedir>
</busconfig>
"#,
            socket.display(),
            &stock[start..end],
            policy_dir.display()
        );
        std::fs::write(&config, xml).expect("write the bus configuration");
        Self::up(config, socket)
    }

    /// A session-style bus that lets anyone own names and listen in (dbus-monitor).
    pub fn session(dir: &Path) -> Bus {
        let socket = dir.join("session_bus_socket");
        let config = dir.join("session-bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("write the bus configuration");
        Self::up(config, socket)
    }

    fn up(config: PathBuf, socket: PathBuf) -> Bus {
        let proc = Self::start(&config, &socket);
        Bus {
            address: format!("unix:path={}", socket.display()),
            config,
            socket,
            proc,
        }
    }

    fn start(config: &Path, socket: &Path) -> Proc {
        let _ = std::fs::remove_file(socket);
        let proc = Proc::spawn(
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .arg("--nofork")
                .arg("--nopidfile")
                .stdout(Stdio::null())
                // Its refusals are expected in some tests; keep them out of the test output.
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(socket.with_extension("log"))
                        .map_or_else(|_| Stdio::null(), Stdio::from),
                ),
        );
        wait_for(Duration::from_secs(10), "the private bus's socket", || {
            socket.exists().then_some(())
        });
        proc
    }

    /// Kills the bus and, `down` later, starts a new one on the same socket.
    pub fn restart(&mut self, down: Duration) {
        self.proc.signal(libc::SIGKILL);
        let _ = self.proc.child.wait();
        std::thread::sleep(down);
        self.proc = Self::start(&self.config, &self.socket);
    }

    pub fn name_has_owner(&self, name: &str) -> bool {
        let o = run(&[
            "gdbus",
            "call",
            "--address",
            &self.address,
            "-d",
            "org.freedesktop.DBus",
            "-o",
            "/org/freedesktop/DBus",
            "-m",
            "org.freedesktop.DBus.NameHasOwner",
            name,
        ]);
        text(&o).contains("(true,)")
    }

    /// busctl on this bus, bounded in time.
    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("10")
            .arg("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("run busctl")
    }

    /// Calls one of the daemon's methods.
    pub fn call(&self, method: &str, extra: &[&str]) -> Output {
        let mut args = vec!["call", NAME, PATH, NAME, method];
        args.extend_from_slice(extra);
        self.busctl(&args)
    }

    /// A property's value as busctl prints it (`s "listening"` → `listening`).
    pub fn property(&self, name: &str) -> Option<String> {
        let out = self.busctl(&["get-property", NAME, PATH, NAME, name]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(
            text.split_once(' ')
                .map_or(text.clone(), |(_, v)| v.trim_matches('"').to_owned()),
        )
    }

    /// One counter or time (`t`) of the daemon's `Stats`; `None` while it is left out.
    pub fn stat(&self, key: &str) -> Option<u64> {
        stat(&self.property("Stats").unwrap_or_default(), key)
    }

    pub fn wait_state(&self, want: &str, limit: Duration) {
        wait_for(limit, format!("State = {want}"), || {
            (self.property("State").as_deref() == Some(want)).then_some(())
        });
    }

    /// Records the daemon's signals (one line each) into a file.
    pub fn monitor(&self, out: &Path) -> Proc {
        let file = std::fs::File::create(out).expect("monitor file");
        // Line-buffered: dbus-monitor is killed at the end and must not lose what it saw.
        Proc::spawn(
            Command::new("stdbuf")
                .args(["-oL", "dbus-monitor", "--address", &self.address])
                .arg(format!("type='signal',interface='{NAME}'"))
                .stdout(file)
                .stderr(Stdio::null()),
        )
    }
}

/// One `t` entry of a `Stats` dictionary as busctl prints it (`"key" t 42`).
pub fn stat(stats: &str, key: &str) -> Option<u64> {
    stats
        .split(&format!("\"{key}\" t "))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}
