//! The WebRTC transport.
//!
//! STUB: the real transport (webrtc-rs peer, Opus track, `oai-events` data channel) replaces
//! this file; until then WebRTC connects fail as retryable, so the WebSocket fallback runs.

use std::sync::Arc;

use super::dialect::Dialect;
use super::{ConnectError, Link, LinkContext};
use crate::config::Secret;

pub async fn connect(
    ctx: &LinkContext,
    dialect: Arc<dyn Dialect>,
    token: &Secret,
) -> Result<Link, ConnectError> {
    let _ = (ctx, dialect, token);
    Err(ConnectError::retry("WebRTC transport not built"))
}
