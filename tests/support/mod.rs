//! Shared pieces of the control-plane tests: private D-Bus daemons, processes that are killed
//! when the test ends, and bounded waiting.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_realtime-voiced");
pub const NAME: &str = "io.thrive.RealtimeVoice1";
pub const PATH: &str = "/io/thrive/RealtimeVoice1";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed (and reaped) when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc(cmd.spawn().expect("spawn a test process"))
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid we own and a valid signal number.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command with a time limit (coreutils `timeout`), capturing its output.
pub fn run(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("10")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run a command")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A private dbus-daemon, killed when dropped.
pub struct Bus {
    pub address: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub proc: Proc,
}

impl Bus {
    /// A bus configured like the system bus: the stock default policy plus the files in
    /// `policy_dir`, listening on `dir/system_bus_socket`.
    pub fn system(dir: &Path, policy_dir: &Path) -> Bus {
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
        let address = format!("unix:path={}", socket.display());
        let proc = Self::start(&config, &socket);
        Bus {
            address,
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
                // Its refusals are expected in these tests; keep them out of the test output.
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(socket.with_extension("log"))
                        .map_or_else(|_| Stdio::null(), Stdio::from),
                ),
        );
        assert!(
            wait_for(Duration::from_secs(10), || socket.exists()),
            "the private system bus did not come up"
        );
        proc
    }

    /// Kills the bus and, `down` later, starts a new one on the same socket.
    pub fn restart(&mut self, down: Duration) {
        self.proc.signal(libc::SIGKILL);
        let _ = self.proc.0.wait();
        std::thread::sleep(down);
        self.proc = Self::start(&self.config, &self.socket);
    }

    /// A session-style bus with its default configuration.
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
        let address = format!("unix:path={}", socket.display());
        let proc = Self::start(&config, &socket);
        Bus {
            address,
            config,
            socket,
            proc,
        }
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
}
