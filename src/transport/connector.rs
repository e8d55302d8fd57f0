//! The real [`Connector`]s. The Realtime API's: an ephemeral token, then a WebRTC or WebSocket
//! link speaking the Realtime GA dialect. GPT-Live's ([`LiveConnector`]): no ephemeral tokens
//! exist for it, so the API key itself, or a backend that creates the session for the device.

use std::sync::Arc;

use tracing::{debug, warn};

use super::dialect::{Dialect, RealtimeGa};
use super::token::TokenSource;
use super::{
    webrtc, websocket, ConnectError, ConnectFuture, Connector, Credentials, ErrorKind, LinkContext,
};
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
        // A reload may also switch the protocol.
        match for_config(ctx) {
            Ok(connector) => Some(connector),
            Err(e) => {
                warn!("keeping the previous connection settings: {e}");
                None
            }
        }
    }

    fn link_counts(&self) -> crate::transport::LinkCounts {
        self.ctx.stats.counts()
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

/// The connector for the configured protocol, a token fetched ahead for the first Start.
pub fn for_config(ctx: LinkContext) -> Result<Arc<dyn Connector>, ConnectError> {
    Ok(match ctx.config.api.protocol {
        crate::config::Protocol::Realtime => {
            let connector = RealtimeConnector::new(ctx)?;
            connector.prefetch();
            Arc::new(connector)
        }
        crate::config::Protocol::Live => Arc::new(LiveConnector { ctx }),
    })
}

const LIVE_NO_KEY: &str = "no API key: put it in /etc/realtime-voiced/api-key, set \
     api.api_key_file or OPENAI_API_KEY, or set api.session_url (GPT-Live has no short-lived tokens)";

/// GPT-Live: the key goes to the service on each connect (WebSocket `Authorization`, or the
/// WebRTC create request), or the offer goes to `api.session_url`, which creates the session.
pub struct LiveConnector {
    ctx: LinkContext,
}

impl LiveConnector {
    pub fn new(ctx: LinkContext) -> Self {
        LiveConnector { ctx }
    }

    fn credentials(&self, kind: TransportKind) -> Result<Credentials, ConnectError> {
        let api = &self.ctx.config.api;
        let key = self
            .ctx
            .config
            .api_key()
            .map_err(|e| ConnectError::fatal(e.to_string()))?
            .map(|(key, _)| key);
        match (key, &api.session_url, kind) {
            (_, Some(url), TransportKind::Webrtc) => Ok(Credentials {
                bearer: None,
                call_url: Some(url.clone()),
                headers: api.session_url_headers.clone(),
            }),
            (Some(key), _, _) => Ok(Credentials::bearer(&key)),
            (None, Some(_), TransportKind::Websocket) => Err(ConnectError::retry(
                "GPT-Live over WebSocket needs the API key on the device; api.session_url serves WebRTC only",
            )),
            (None, None, _) => Err(ConnectError::fatal(LIVE_NO_KEY)),
        }
    }
}

impl Connector for LiveConnector {
    fn ready(&self) -> Result<(), String> {
        let config = &self.ctx.config;
        if config.api.session_url.is_some() {
            return Ok(());
        }
        match config.api_key() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(LIVE_NO_KEY.to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn reconfigured(&self, config: &Arc<Config>) -> Option<Arc<dyn Connector>> {
        let ctx = LinkContext {
            config: Arc::clone(config),
            ..self.ctx.clone()
        };
        for_config(ctx).ok()
    }

    fn link_counts(&self) -> crate::transport::LinkCounts {
        self.ctx.stats.counts()
    }

    fn connect(&self, kind: TransportKind) -> ConnectFuture<'_> {
        Box::pin(async move {
            let credentials = self.credentials(kind)?;
            let dialect = super::dialect::for_config(
                Arc::clone(&self.ctx.config),
                kind,
                Arc::clone(&self.ctx.provided),
            );
            let result = match kind {
                TransportKind::Websocket => match &credentials.bearer {
                    Some(key) => websocket::connect(&self.ctx, dialect, key).await,
                    None => Err(ConnectError::fatal(LIVE_NO_KEY)),
                },
                TransportKind::Webrtc => {
                    webrtc::connect_with(&self.ctx, dialect, &credentials).await
                }
            };
            // The key is the credential: a refusal will not change by asking again.
            result.map_err(|e| match e.kind {
                ErrorKind::TokenRefused => ConnectError::fatal(format!(
                    "{} (is the API key right, and enabled for GPT-Live?)",
                    e.message
                )),
                _ => e,
            })
        })
    }
}

impl RealtimeConnector {
    async fn dial(&self, kind: TransportKind) -> Result<super::Link, ConnectError> {
        let token = self.tokens.token().await?;
        let dialect: Arc<dyn Dialect> = Arc::new(
            RealtimeGa::new(Arc::clone(&self.ctx.config), kind)
                .with_provided(Arc::clone(&self.ctx.provided)),
        );
        match kind {
            TransportKind::Websocket => websocket::connect(&self.ctx, dialect, &token).await,
            TransportKind::Webrtc => webrtc::connect(&self.ctx, dialect, &token).await,
        }
    }
}
