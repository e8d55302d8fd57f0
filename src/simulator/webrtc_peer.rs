//! The simulator's WebRTC answerer.
//!
//! STUB: the real answerer (a webrtc-rs peer driving a [`super::brain::Brain`] in WebRTC mode)
//! replaces this file; until then a call is refused with a clear message.

use std::sync::Arc;

use super::Sim;

/// The SDP answer and the call id the `Location` header names.
pub struct Answer {
    pub sdp: String,
    pub call_id: String,
}

pub async fn answer(sim: Arc<Sim>, offer_sdp: String) -> Result<Answer, String> {
    let _ = (sim, offer_sdp);
    Err("WebRTC answerer not built".into())
}
