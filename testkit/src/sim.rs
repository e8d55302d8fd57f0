//! The realtime simulator, a stand-in for the service on 127.0.0.1: in the test's process, or
//! as the `realtime-sim` binary. The only place outside its own tests that names where the
//! simulator lives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use realtime_sim::server::RunningSim;
pub use realtime_sim::stats::SimStats;
pub use realtime_sim::SimOptions;

use crate::proc::Proc;

/// Starts the simulator in this process on a free loopback port.
pub async fn start(options: SimOptions) -> RunningSim {
    crate::link::install_crypto();
    realtime_sim::server::start(realtime_sim::Sim::new(options))
        .await
        .expect("simulator starts")
}

/// The `realtime-sim` binary, running; killed when dropped.
pub struct SimProcess {
    /// `127.0.0.1:PORT`, as it announced it.
    pub addr: String,
    pub port: u16,
    pub proc: Proc,
    /// Its stderr, where it logs what it saw.
    pub log: PathBuf,
}

/// The `realtime-sim` binary of this build: beside the running test or bench executable's
/// folder (`target/<profile>/`). `cargo test --workspace` builds it (the simulator's own
/// tests need it); a run of one package alone may not, hence the message.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let binary = profile_dir.join("realtime-sim");
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, or `cargo build -p realtime-sim` first",
        binary.display()
    );
    binary
}

impl SimProcess {
    /// Starts this build's `realtime-sim` (see [`binary`]) on `port` (0: any free one) with
    /// `args`, and waits up to 10 s for the address it prints. Its log goes to a new file in
    /// `dir`.
    pub fn start(dir: &Path, port: u16, args: &[&str]) -> SimProcess {
        SimProcess::start_binary(binary(), dir, port, args)
    }

    /// [`SimProcess::start`] with the binary named.
    pub fn start_binary(
        binary: impl AsRef<Path>,
        dir: &Path,
        port: u16,
        args: &[&str],
    ) -> SimProcess {
        let binary = binary.as_ref();
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let log = dir.join(format!(
            "sim-{port}-{}.log",
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let mut proc = Proc::spawn(
            Command::new(binary)
                .args(["--port", &port.to_string()])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).expect("sim log")),
        );
        let first = proc
            .line_starting("", Duration::from_secs(10))
            .expect("realtime-sim prints its address in time");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected simulator address: {addr:?}"));
        SimProcess {
            addr,
            port,
            proc,
            log,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the value for `api.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Its counters (`GET /v1/sim/stats`): schema checks and violations, truncations, tokens.
    pub fn stats(&self) -> serde_json::Value {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .expect("the simulator accepts connections");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        stream
            .write_all(b"GET /v1/sim/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("request sent");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("stats are JSON ({e}): {reply}"))
    }

    /// What it logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
