//! The real [`Connector`]: an ephemeral token, then a WebRTC or WebSocket link speaking the
//! Realtime GA dialect.

use std::sync::Arc;

use tracing::{debug, warn};

use super::dialect::{Dialect, RealtimeGa};
use super::token::TokenSource;
use super::{webrtc, websocket, ConnectError, ConnectFuture, Connector, ErrorKind, LinkContext};
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

    fn packets_lost(&self) -> u64 {
        self.ctx.stats.packets_lost()
    }

    fn connect(&self, kind: TransportKind) -> ConnectFuture<'_> {
        Box::pin(async move {
            let first = self.dial(kind).await;
            let result = match first {
                // A refused token (expired, revoked) is replaced and tried once more; a second
                // refusal of a fresh token will not change on its own.
                Err(e) if e.kind == ErrorKind::TokenRefused => {
                    debug!("the service refused the token; trying once with a fresh one: {e}");
                    self.tokens.invalidate().await;
                    match self.dial(kind).await {
                        Err(e) if e.kind == ErrorKind::TokenRefused => {
                            self.tokens.invalidate().await;
                            Err(ConnectError::fatal(e.message))
                        }
                        other => other,
                    }
                }
                other => other,
            };
            if result.is_ok() {
                self.tokens.prefetch();
            }
            result
        })
    }
}

impl RealtimeConnector {
    async fn dial(&self, kind: TransportKind) -> Result<super::Link, ConnectError> {
        let token = self.tokens.token().await?;
        let dialect: Arc<dyn Dialect> =
            Arc::new(RealtimeGa::new(Arc::clone(&self.ctx.config), kind));
        match kind {
            TransportKind::Websocket => websocket::connect(&self.ctx, dialect, &token).await,
            TransportKind::Webrtc => webrtc::connect(&self.ctx, dialect, &token).await,
        }
    }
}
