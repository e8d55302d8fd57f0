//! The realtime simulator, a stand-in for the service on 127.0.0.1: in the test's process, or
//! as the `realtime-sim` binary. The only place outside its own tests that names where the
//! simulator lives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use realtime_voiced::simulator::server::RunningSim;
pub use realtime_voiced::simulator::SimOptions;

use crate::proc::Proc;

/// Starts the simulator in this process on a free loopback port.
pub async fn start(options: SimOptions) -> RunningSim {
    crate::link::install_crypto();
    realtime_voiced::simulator::server::start(realtime_voiced::simulator::Sim::new(options))
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

impl SimProcess {
    /// Starts `binary` (`env!("CARGO_BIN_EXE_realtime-sim")`) on `port` (0: any free one) with
    /// `args`, and waits up to 10 s for the address it prints. Its log goes to a new file in
    /// `dir`.
    pub fn start(binary: &str, dir: &Path, port: u16, args: &[&str]) -> SimProcess {
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

    /// What it logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
