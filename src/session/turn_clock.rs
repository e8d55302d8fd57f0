//! The turn clock's state: what `turns.rs` keeps between a turn's events (a leaf, so that the
//! machine can hold it without importing the code that uses it).

use std::collections::VecDeque;
use std::time::Instant;

use super::types::TurnTimes;

/// Turns a median is taken over.
const RECENT_TURNS: usize = 20;

/// The recent values of one figure.
#[derive(Debug, Default)]
pub(super) struct Recent(VecDeque<u64>);

impl Recent {
    /// Adds a value; returns the median of the recent ones.
    pub(super) fn push(&mut self, value: u64) -> Option<u64> {
        if self.0.len() == RECENT_TURNS {
            self.0.pop_front();
        }
        self.0.push_back(value);
        let mut sorted: Vec<u64> = self.0.iter().copied().collect();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied()
    }
}

/// The turn clock's state, kept by the machine.
#[derive(Debug, Default)]
pub(super) struct TurnClock {
    /// The turn waiting for its first audio at the speaker: when the user's turn ended.
    pub(super) awaiting_audio: Option<Instant>,
    /// Tool runs of the turn in progress: started (by call id), and the time spent.
    pub(super) tools_started: Vec<(String, Instant)>,
    pub(super) tools_ms: u64,
    pub(super) first_audio: Recent,
    pub(super) silence: Recent,
    pub(super) tools: Recent,
    pub(super) connect: Recent,
    /// The turn whose answer is playing, logged once the answer ends.
    pub(super) open: Option<TurnTimes>,
    /// The device silenced the answer; its time to silence is on its way from the engine.
    pub(super) silence_pending: bool,
}
