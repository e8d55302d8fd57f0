//! Wire dialects: how [`ClientEvent`]s become JSON text and JSON text becomes [`ServerEvent`]s.
//!
//! Transports move text and audio; the dialect alone knows the service's vocabulary. Today that is
//! the Realtime API as it went GA ([`RealtimeGa`]); another API (GPT-Live) is one more
//! implementation of [`Dialect`], with no change to the transports or the state machine.

//!
//! - `realtime.rs`: the Realtime API (GA); `realtime_wire.rs`: the shapes of its server events;
//!   `event_ids.rs`: the ids on our events, so that an error can be tied to its cause.

mod event_ids;
mod realtime;
mod realtime_wire;

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use crate::session::{ClientEvent, ServerEvent};

pub use realtime::RealtimeGa;

/// The sample rate of PCM audio carried inside WebSocket events.
pub const WS_PCM_RATE: u32 = 24_000;

/// One decoded server message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// Something the state machine acts on.
    Event(ServerEvent),
    /// Assistant audio, base64 PCM16 mono at [`WS_PCM_RATE`] (WebSocket only). The transport
    /// reports [`ServerEvent::AudioStarted`] for the first delta of each item: the dialect keeps
    /// no state.
    AudioDelta {
        item_id: Option<Cow<'a, str>>,
        base64: Cow<'a, str>,
    },
    /// A well-formed event the daemon has no use for (its type).
    Ignored(Cow<'a, str>),
    /// Not JSON, or an event whose fields do not parse: why, in one line.
    Malformed(String),
}

/// Translates between the daemon's events and one API's JSON.
pub trait Dialect: Send + Sync {
    /// JSON text of a client event; `SessionUpdate` carries the whole session from the config.
    fn encode(&self, event: &ClientEvent) -> String;

    /// Parses one server message. Never fails: bad input becomes [`Decoded::Malformed`].
    fn decode<'a>(&self, text: &'a str) -> Decoded<'a>;

    /// Writes the JSON text of an event appending PCM16 mono at [`WS_PCM_RATE`] to the input
    /// buffer (WebSocket). `out` is cleared first; callers reuse it so the hot path does not
    /// allocate once it has grown.
    fn encode_audio_append(&self, pcm: &[i16], scratch: &mut Vec<u8>, out: &mut String);

    /// The session configuration used when minting an ephemeral token (transport-neutral:
    /// the audio format is left to the transport's own `session.update` or SDP).
    fn token_session(&self) -> Value;
}

/// Writes a short, single-line excerpt of a message for logs (it may hold a transcript, so only
/// the start, and never the whole of a huge payload).
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(120) {
        let _ = if c.is_control() {
            write!(out, " ")
        } else {
            write!(out, "{c}")
        };
    }
    if text.len() > out.len() {
        out.push('…');
    }
    out
}
