//! The conversation: dialect-neutral events, the sans-IO state machine and its reconnect backoff.

pub mod backoff;
mod conversation;
pub mod events;
pub mod machine;
mod pieces;
mod turn_clock;
mod turns;
pub mod types;

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod conversation_tests;
#[cfg(test)]
mod pieces_tests;
#[cfg(test)]
pub(crate) mod test_rig;
#[cfg(test)]
mod turns_tests;

pub use events::{ClientEvent, ResponseOutcome, Role, ServerEvent, Usage};
pub use machine::Machine;
pub use types::{
    Action, BargeIn, Earcon, Input, LedPattern, Rules, Settings, State, Stats, StopReason,
    TurnTimes,
};
