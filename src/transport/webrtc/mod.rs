//! The WebRTC transport: one call to the service over a webrtc-rs peer connection.
//!
//! The offer carries one Opus send/receive audio section and the `oai-events` data channel. ICE
//! is gathered before the offer leaves (the service takes no trickled candidates); the offer is
//! POSTed as the dialect wants it (Realtime: the SDP to `{base}/realtime/calls`, the call id
//! from `Location` kept for the hang-up; GPT-Live: JSON with the session to
//! `{base}/live/sessions`, then `session.started` awaited on the data channel), and the answer
//! applied. Microphone frames are Opus-encoded onto the send track, the service's
//! track is decoded (lost packets concealed) into the speaker, and JSON events cross the data
//! channel through the wire dialect.
//!
//! - [`peer`]: the peer connection, as both ends of a call set it up (public: the simulator's
//!   answerer is built from it too);
//! - [`media`]: the Opus track, RTP packing and unpacking (public for the same reason);
//! - `client`: placing the call; `call`: what a placed call holds; `http`: the offer/answer
//!   and hang-up requests; `link`: the running call, events both ways; `uplink`: the
//!   microphone's Opus profile, following the loss the far end reports.

mod call;
mod client;
mod http;
mod link;
pub mod media;
pub mod peer;
pub mod uplink;

pub use client::{connect, connect_with};
pub use peer::EVENTS_LABEL;
