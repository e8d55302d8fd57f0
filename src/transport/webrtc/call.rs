//! A call the service knows of: the peer connection and what its hang-up needs.

use std::sync::Arc;

use tracing::debug;
use webrtc::peer_connection::PeerConnection;

use super::http::hang_up;
use crate::transport::dialect::Dialect;
use crate::transport::Credentials;

/// A call in progress: what the hang-up needs.
pub(super) struct Call {
    pub(super) pc: Arc<dyn PeerConnection>,
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) dialect: Arc<dyn Dialect>,
    pub(super) credentials: Credentials,
    pub(super) call_id: Option<String>,
}

impl Call {
    /// Closes the peer connection and, if the service knows of the call and the API has a
    /// hang-up request, hangs it up.
    pub(super) async fn end(self) {
        let close = async {
            if let Err(e) = self.pc.close().await {
                debug!("closing the peer connection: {e}");
            }
        };
        let hangup = async {
            let (Some(id), Some(token)) = (&self.call_id, &self.credentials.bearer) else {
                return;
            };
            if let Some(path) = self.dialect.hangup_path(id) {
                let url = format!("{}/{path}", self.base);
                hang_up(&self.http, &url, id, token).await;
            }
        };
        tokio::join!(close, hangup);
    }
}
