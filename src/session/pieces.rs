//! What GPT-Live sends that the Realtime API does not: transcripts in pieces with no final
//! event, voice time in seconds, hand-offs to the device, and its own end of a session.
//!
//! GPT-Live never says "this turn's text is complete"; the machine decides from what it
//! already knows: the user's words are complete when the assistant starts to answer, the
//! assistant's when its audio stops.

use std::time::Instant;

use super::events::{ClientEvent, Role};
use super::machine::Machine;
use super::types::{Action, State};

/// Longest text kept for one turn; the rest of a runaway transcript is dropped.
const MAX_TURN_TEXT: usize = 16 * 1024;

impl Machine {
    pub(super) fn transcript_piece(&mut self, now: Instant, role: Role, text: &str) {
        self.last_activity = now;
        let turn = match role {
            Role::User => &mut self.pieces.user,
            Role::Assistant => &mut self.pieces.assistant,
        };
        if turn.len() + text.len() <= MAX_TURN_TEXT {
            turn.push_str(text);
        }
        if role == Role::User {
            // The user is talking: the next answer is timed from when they stop.
            self.turn_ended = Some(now);
        }
    }

    /// The assistant starts to answer: what the user said is complete.
    pub(super) fn user_turn_over(&mut self) {
        let text = std::mem::take(&mut self.pieces.user);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.out.push(Action::Transcript {
            role: Role::User,
            text: text.to_owned(),
        });
        self.out.push(Action::Remember {
            role: Role::User,
            text: text.to_owned(),
        });
    }

    /// The assistant's audio stopped: what it said is complete, and was heard (GPT-Live stops
    /// talking itself when interrupted, so what it said is what played).
    pub(super) fn assistant_turn_over(&mut self) {
        let text = std::mem::take(&mut self.pieces.assistant);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.out.push(Action::Transcript {
            role: Role::Assistant,
            text: text.to_owned(),
        });
        self.out.push(Action::Remember {
            role: Role::Assistant,
            text: text.to_owned(),
        });
    }

    pub(super) fn seconds_used(&mut self, seconds: f64) {
        if !seconds.is_finite() || seconds < self.pieces.seconds_seen {
            return;
        }
        let added = seconds - self.pieces.seconds_seen;
        self.pieces.seconds_seen = seconds;
        self.stats.voice_ms += (added * 1000.0).round() as u64;
        self.out.push(Action::StatsChanged);
    }

    /// Client delegation hands the device a task it cannot see: say so, so that the model
    /// tells the user instead of waiting for a result.
    pub(super) fn delegated(&mut self, delegation_id: String) {
        self.out.push(Action::Send(ClientEvent::DelegationDeclined {
            delegation_id,
        }));
    }

    pub(super) fn session_closed(&mut self, now: Instant, expired: bool, reason: &str) {
        if expired {
            // The length limit: carry on in a fresh session, as for the Realtime API's.
            self.rollover(now);
        } else if self.state == State::Speaking || self.state == State::Listening {
            self.set_error(format!("the service ended the session: {reason}"));
        }
    }
}
