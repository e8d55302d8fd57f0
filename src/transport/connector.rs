//! The real [`Connector`]: an ephemeral token, then a WebRTC or WebSocket link speaking the
//! Realtime GA dialect.

use std::sync::Arc;

use tracing::debug;

use super::dialect::{Dialect, RealtimeGa};
use super::token::TokenSource;
use super::{webrtc, websocket, ConnectError, ConnectFuture, Connector, LinkContext};
use crate::config::TransportKind;

pub struct RealtimeConnector {
    ctx: LinkContext,
    tokens: Arc<TokenSource>,
}

impl RealtimeConnector {
    pub fn new(ctx: LinkContext) -> Result<Self, ConnectError> {
        // Tokens serve both transports, so they carry the transport-neutral session.
        let session =
            RealtimeGa::new(Arc::clone(&ctx.config), TransportKind::Webrtc).token_session();
        let tokens = Arc::new(TokenSource::new(Arc::clone(&ctx.config), session)?);
        Ok(RealtimeConnector { ctx, tokens })
    }

    /// Gets a token ready in the background, so that the next Start does not wait for one.
    /// Call at startup; the connector calls it again after each connect.
    pub fn prefetch(&self) {
        self.tokens.prefetch();
    }

    pub fn tokens(&self) -> &Arc<TokenSource> {
        &self.tokens
    }
}

impl Connector for RealtimeConnector {
    fn connect(&self, kind: TransportKind) -> ConnectFuture<'_> {
        Box::pin(async move {
            let token = self.tokens.token().await?;
            let dialect: Arc<dyn Dialect> =
                Arc::new(RealtimeGa::new(Arc::clone(&self.ctx.config), kind));
            let result = match kind {
                TransportKind::Websocket => websocket::connect(&self.ctx, dialect, &token).await,
                TransportKind::Webrtc => webrtc::connect(&self.ctx, dialect, &token).await,
            };
            match result {
                Ok(link) => {
                    self.tokens.prefetch();
                    Ok(link)
                }
                Err(e) => {
                    // The token may be why (expired, revoked): the next try mints a new one.
                    debug!("connect failed, dropping the cached token: {e}");
                    self.tokens.invalidate().await;
                    Err(e)
                }
            }
        })
    }
}
