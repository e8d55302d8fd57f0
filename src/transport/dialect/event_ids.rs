//! The `event_id`s on our client events.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The `event_id`s we put on client events, so that an `error` can be tied to its cause. The
/// last few are kept with their type; audio appends get ids of their own shape instead, so the
/// audio path takes no lock.
#[derive(Default)]
pub(super) struct EventIds {
    next: AtomicU64,
    recent: Mutex<VecDeque<(u64, &'static str)>>,
}

/// How many sent events an error can still be traced to.
const RECENT_EVENTS: usize = 64;
const ID_PREFIX: &str = "rtv_";
const APPEND_ID_PREFIX: &str = "rtv_audio_";

impl EventIds {
    pub(super) fn issue(&self, kind: &'static str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back((n, kind));
        }
        format!("{ID_PREFIX}{n}")
    }

    /// Writes an id for an audio append into `out` (no allocation once `out` has grown).
    pub(super) fn write_append(&self, out: &mut String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = write!(out, "{APPEND_ID_PREFIX}{n}");
    }

    /// "our response.create (rtv_12)" for an id we issued; the bare id otherwise. Audio
    /// appends are named `append_kind` (each API has its own).
    pub(super) fn describe(&self, id: &str, append_kind: &str) -> String {
        if id.starts_with(APPEND_ID_PREFIX) {
            return format!("our {append_kind} ({id})");
        }
        let kind = id
            .strip_prefix(ID_PREFIX)
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|n| {
                let recent = self.recent.lock().ok()?;
                recent.iter().find(|(m, _)| *m == n).map(|(_, k)| *k)
            });
        match kind {
            Some(kind) => format!("our {kind} ({id})"),
            None => format!("event {id}"),
        }
    }
}
