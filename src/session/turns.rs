//! Where a turn's seconds go: from the end of the user's speech (or a typed text) to the first
//! assistant audio at the speaker, the tools run on the way, the connect of the session, and,
//! when the user talks over the answer, how long the speaker took to fall silent.
//!
//! Each figure goes into `Stats` (the last and the median of recent turns) as soon as it is
//! measured; one [`Action::TurnTimed`] per turn, once its answer has ended, carries them all
//! for the log line.

use std::time::Instant;

use super::machine::Machine;
use super::types::{Action, TurnTimes};

impl Machine {
    pub(super) fn tool_finished(&mut self, now: Instant, call_id: &str) {
        let t = &mut self.turns;
        if let Some(i) = t.tools_started.iter().position(|(id, _)| id == call_id) {
            let (_, started) = t.tools_started.swap_remove(i);
            t.tools_ms += now.saturating_duration_since(started).as_millis() as u64;
        }
    }

    /// A session connected in `ms`.
    pub(super) fn connect_timed(&mut self, ms: u64) {
        self.stats.last_connect_ms = Some(ms);
        self.stats.median_connect_ms = self.turns.connect.push(ms);
    }

    /// The answer is audible: the turn's wait is timed.
    pub(super) fn speaker_started(&mut self, now: Instant) {
        let Some(ended) = self.turns.awaiting_audio.take() else {
            return;
        };
        // A turn still open (its answer never ended as such) is logged as it stands.
        self.close_turn();
        let first_audio_ms = now.saturating_duration_since(ended).as_millis() as u64;
        let tools_ms = std::mem::take(&mut self.turns.tools_ms);
        self.stats.time_to_first_audio_ms = Some(first_audio_ms);
        self.stats.median_first_audio_ms = self.turns.first_audio.push(first_audio_ms);
        self.stats.tools_ms = Some(tools_ms);
        self.stats.median_tools_ms = self.turns.tools.push(tools_ms);
        self.turns.open = Some(TurnTimes {
            first_audio_ms,
            tools_ms,
            connect_ms: self.stats.last_connect_ms,
            time_to_silence_ms: None,
        });
        self.out.push(Action::StatsChanged);
    }

    /// The device heard the user over the answer and is silencing the speaker.
    pub(super) fn silencing(&mut self) {
        if self.turns.open.is_some() {
            self.turns.silence_pending = true;
        }
    }

    /// The speaker fell silent `ms` after the user's voice began.
    pub(super) fn silenced(&mut self, ms: u64) {
        self.stats.time_to_silence_ms = Some(ms);
        self.stats.median_time_to_silence_ms = self.turns.silence.push(ms);
        if let Some(open) = &mut self.turns.open {
            open.time_to_silence_ms = Some(ms);
        }
        self.turns.silence_pending = false;
        self.close_turn();
        self.out.push(Action::StatsChanged);
    }

    /// The answer stopped playing. A local barge-in's time to silence follows within a
    /// period; the turn waits for it (or for the next turn, or the end of the session).
    pub(super) fn answer_ended(&mut self, session_over: bool) {
        if session_over || !self.turns.silence_pending {
            self.turns.silence_pending = false;
            self.close_turn();
        }
    }

    fn close_turn(&mut self) {
        if let Some(turn) = self.turns.open.take() {
            self.out.push(Action::TurnTimed(turn));
        }
    }
}
