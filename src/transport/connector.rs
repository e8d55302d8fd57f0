//! The real [`Connector`]: an ephemeral token, then a WebRTC or WebSocket link speaking the
//! Realtime GA dialect.

use std::sync::Arc;

use tracing::{debug, warn};

use super::dialect::{Dialect, RealtimeGa};
use super::token::TokenSource;
use super::{webrtc, websocket, ConnectError, ConnectFuture, Connector, LinkContext};
use crate::config::{Config, TransportKind};

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
    fn ready(&self) -> Result<(), String> {
        let config = &self.ctx.config;
        if config.api.token_url.is_some() {
            return Ok(());
        }
        match config.api_key() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(super::token::NO_KEY.to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn reconfigured(&self, config: &Arc<Config>) -> Option<Arc<dyn Connector>> {
        let ctx = LinkContext {
            config: Arc::clone(config),
            ..self.ctx.clone()
        };
        // A fresh token source: a cached token carries the old session (voice, instructions).
        match RealtimeConnector::new(ctx) {
            Ok(connector) => {
                connector.prefetch();
                Some(Arc::new(connector))
            }
            Err(e) => {
                warn!("keeping the previous connection settings: {e}");
                None
            }
        }
    }

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
                    // A refused token (expired, revoked) is replaced on the next try; any other
                    // failure keeps it, so a fallback to the other transport does not wait.
                    if refused_token(&e) {
                        debug!("the service refused the token; dropping it: {e}");
                        self.tokens.invalidate().await;
                    }
                    Err(e)
                }
            }
        })
    }
}

/// Transports report HTTP refusals as "HTTP 401 …" / "HTTP 403 …".
fn refused_token(e: &ConnectError) -> bool {
    e.message.contains("HTTP 401") || e.message.contains("HTTP 403")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_drop_the_token() {
        assert!(refused_token(&ConnectError::retry(
            "WebSocket to api.openai.com refused: HTTP 401 Unauthorized: expired"
        )));
        assert!(refused_token(&ConnectError::fatal(
            "call refused: HTTP 403 Forbidden"
        )));
        assert!(!refused_token(&ConnectError::retry(
            "WebSocket connect to 127.0.0.1:40123 failed: Connection refused"
        )));
        assert!(!refused_token(&ConnectError::retry("ICE failed")));
    }
}
