//! Talking to systemd: readiness, status line, watchdog, reload and stop notifications.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is not set (not started by systemd).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::control::{Command, ControlHandle, Snapshot};
use crate::session::State;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!("cannot notify systemd: {e}");
    }
}

/// The human-readable `STATUS=` line for a snapshot, e.g. `listening (webrtc)`.
pub fn status_line(s: &Snapshot) -> String {
    // One line: a newline would end the assignment in the notify protocol.
    let line = match s.state {
        State::Idle => "idle".to_owned(),
        State::Error if s.last_error.is_empty() => "error".to_owned(),
        State::Error => format!("error: {}", s.last_error),
        other => format!("{} ({})", other.as_str(), s.transport),
    };
    line.replace(['\n', '\r'], " ")
}

/// `READY=1` with the current status.
pub fn ready(s: &Snapshot) {
    let line = status_line(s);
    notify(&[NotifyState::Ready, NotifyState::Status(&line)]);
}

/// `RELOADING=1` with the monotonic time systemd asks for.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(e) => {
            debug!("cannot read the monotonic clock: {e}");
            notify(&[NotifyState::Reloading]);
        }
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Keeps `STATUS=` in step with the daemon's state until the daemon is gone.
pub async fn follow_status(mut snapshot: watch::Receiver<Snapshot>) {
    let mut last = String::new();
    loop {
        let line = status_line(&snapshot.borrow_and_update());
        if line != last {
            notify(&[NotifyState::Status(&line)]);
            last = line;
        }
        if snapshot.changed().await.is_err() {
            return;
        }
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Sends `WATCHDOG=1` every half interval, but only when the event loop answers a ping: a
/// stuck loop stops the pings and systemd restarts the daemon.
pub async fn watchdog(handle: ControlHandle, interval: Duration) {
    let every = interval / 2;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match tokio::time::timeout(every, handle.request(Command::Ping)).await {
            Ok(Ok(())) => notify(&[NotifyState::Watchdog]),
            Ok(Err(_)) if handle.commands.is_closed() => return,
            _ => warn!("the event loop did not answer in time; not telling the watchdog"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransportKind;

    #[test]
    fn status_lines() {
        let mut s = Snapshot::new(TransportKind::Webrtc, 0.5);
        assert_eq!(status_line(&s), "idle");
        s.state = State::Listening;
        assert_eq!(status_line(&s), "listening (webrtc)");
        s.state = State::Error;
        s.last_error = "no route\nto host".into();
        assert_eq!(status_line(&s), "error: no route to host");
    }
}
