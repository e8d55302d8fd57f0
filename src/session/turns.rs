//! Where a turn's seconds go: from the end of the user's speech (or a typed text) to the first
//! assistant audio at the speaker, the tools run on the way, and the connect of the session.
//! One [`Action::TurnTimed`] per turn, for a log line; the last and the median in `Stats`.

use std::time::Instant;

use super::machine::Machine;
use super::types::{Action, TurnTimes};

/// Turns the median is taken over.
const RECENT_TURNS: usize = 20;

impl Machine {
    pub(super) fn tool_finished(&mut self, now: Instant, call_id: &str) {
        if let Some(i) = self.tools_started.iter().position(|(id, _)| id == call_id) {
            let (_, started) = self.tools_started.swap_remove(i);
            self.tools_ms += now.saturating_duration_since(started).as_millis() as u64;
        }
    }

    /// The answer is audible: the turn is timed.
    pub(super) fn speaker_started(&mut self, now: Instant) {
        let Some(ended) = self.awaiting_audio.take() else {
            return;
        };
        let first_audio_ms = now.saturating_duration_since(ended).as_millis() as u64;
        if self.recent_first_audio.len() == RECENT_TURNS {
            self.recent_first_audio.pop_front();
        }
        self.recent_first_audio.push_back(first_audio_ms);
        let mut sorted: Vec<u64> = self.recent_first_audio.iter().copied().collect();
        sorted.sort_unstable();
        self.stats.time_to_first_audio_ms = Some(first_audio_ms);
        self.stats.median_first_audio_ms = sorted.get(sorted.len() / 2).copied();
        self.out.push(Action::TurnTimed(TurnTimes {
            first_audio_ms,
            tools_ms: std::mem::take(&mut self.tools_ms),
            connect_ms: self.stats.last_connect_ms,
        }));
        self.out.push(Action::StatsChanged);
    }
}
