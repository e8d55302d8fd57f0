//! The conversation: dialect-neutral events, the sans-IO state machine and its reconnect backoff.

pub mod backoff;
mod conversation;
pub mod events;
pub mod machine;
pub mod types;

pub use events::{ClientEvent, Role, ServerEvent, Usage};
pub use machine::Machine;
pub use types::{Action, Earcon, Input, LedPattern, Settings, State, Stats, StopReason};
