//! Keeps one sound device open for the life of its thread: a device that fails is closed,
//! reported, and reopened with backoff until it is back or the engine stops. Capture and
//! playback differ only in what they do with an open device ([`DeviceUser`]).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tracing::{info, warn};

use super::device::{self, Pcm};
use super::shared::{Shared, Side};

/// First wait before a reopen; doubled on each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a thread does with its device.
pub(crate) trait DeviceUser {
    /// Uses the device until told to stop (`None`) or until it fails (`Some(reason)`).
    fn work(&mut self, pcm: &Pcm) -> Option<String>;
    /// Called between reopen attempts while the device is away.
    fn away(&mut self) {}
    /// Called once when the device has failed, before it is closed.
    fn lost(&mut self) {}
}

/// The device a thread keeps open.
pub(crate) struct Device<'a> {
    pub shared: &'a Shared,
    pub name: &'a str,
    pub side: Side,
    pub period_ms: u32,
}

impl Device<'_> {
    /// Runs `user` on the device (`pcm` when already open) until the engine stops.
    pub fn supervise(&self, mut pcm: Option<Pcm>, user: &mut impl DeviceUser) {
        let mut backoff = FIRST_BACKOFF;
        while !self.shared.stop.load(Relaxed) {
            let Some(open) = pcm.take() else {
                user.away();
                pcm = self.reopen(&mut backoff);
                continue;
            };
            match user.work(&open) {
                None => return,
                Some(why) => {
                    let problem = format!(
                        "{} device `{}` failed: {why}; reopening",
                        self.side, self.name
                    );
                    warn!("{problem}");
                    self.shared.device_losses.fetch_add(1, Relaxed);
                    self.shared.set_problem(self.side, Some(problem));
                    user.lost();
                    drop(open);
                    backoff = FIRST_BACKOFF;
                }
            }
        }
    }

    /// Waits `backoff`, then tries to open the device again: on success clears the device
    /// problem, on failure records it and doubles the wait.
    fn reopen(&self, backoff: &mut Duration) -> Option<Pcm> {
        self.shared.sleep_unless_stopped(*backoff);
        if self.shared.stop.load(Relaxed) {
            return None;
        }
        match device::open(self.name, self.side, self.period_ms) {
            Ok(pcm) => {
                info!(device = %self.name, "{} device is back", self.side);
                self.shared.set_problem(self.side, None);
                Some(pcm)
            }
            Err(e) => {
                self.shared
                    .set_problem(self.side, Some(format!("{e}; retrying")));
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
                None
            }
        }
    }
}
