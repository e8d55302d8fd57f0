//! Real parts for realtime-voiced's integration tests and benches, one of each: a child process
//! killed when its guard drops, a bounded wait, a private D-Bus, PulseAudio with ALSA in front
//! of it, test signals and their analysis, a recording speaker, the daemon assembled in
//! process, the realtime simulator, and the aiortc peer.
//!
//! Every process is killed when its guard drops and every wait is bounded. Tests may panic: a
//! failed wait says what it waited for.
//!
//! The package's binaries are known by path only inside its own tests and benches
//! (`env!("CARGO_BIN_EXE_…")`), so the kit takes them as arguments.

pub mod aiortc;
pub mod audio_rig;
pub mod bus;
pub mod daemon;
pub mod link;
pub mod own_process;
pub mod proc;
pub mod procstat;
pub mod signals;
pub mod sim;
pub mod speaker;
pub mod wait;

pub use proc::Proc;
pub use wait::wait_for;

use std::path::{Path, PathBuf};

/// The repository's root (the daemon's package), where the shipped files are.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kit lives in the repository")
        .to_owned()
}
