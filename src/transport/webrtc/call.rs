//! A call the service knows of: the peer connection and what its hang-up needs.

use std::sync::Arc;

use tracing::debug;
use webrtc::peer_connection::PeerConnection;

use super::http::hang_up;
use crate::config::Secret;

/// A call in progress: what the hang-up needs.
pub(super) struct Call {
    pub(super) pc: Arc<dyn PeerConnection>,
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) token: Secret,
    pub(super) call_id: Option<String>,
}

impl Call {
    /// Closes the peer connection and, if the service knows of the call, hangs it up.
    pub(super) async fn end(self) {
        let close = async {
            if let Err(e) = self.pc.close().await {
                debug!("closing the peer connection: {e}");
            }
        };
        let hangup = async {
            if let Some(id) = &self.call_id {
                hang_up(&self.http, &self.base, id, &self.token).await;
            }
        };
        tokio::join!(close, hangup);
    }
}
