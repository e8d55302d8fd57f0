//! The conversation: dialect-neutral events, the sans-IO state machine and its reconnect backoff.

pub mod backoff;
pub mod events;
pub mod machine;

pub use events::{ClientEvent, Role, ServerEvent, Usage};
pub use machine::{Action, Earcon, Input, LedPattern, Machine, Settings, State, Stats, StopReason};
