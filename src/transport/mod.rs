//! Transports carry one conversation with the service: WebRTC (default) or WebSocket.
//!
//! A [`Connector`] opens a [`Link`]: a running task that owns the connection, sends the
//! [`ClientEvent`]s it is given, reports [`LinkEvent`]s, moves microphone frames out and speaker
//! audio in. The session state machine sees only these types, never which transport or wire
//! dialect is underneath. Dropping the `commands` sender (or sending on a closed link) ends the
//! task, which hangs up cleanly.

pub mod activity;
pub mod connector;
pub mod dialect;
pub mod error;
pub mod http_body;
pub mod token;
pub mod webrtc;
pub mod websocket;
mod websocket_handshake;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

pub use error::{ConnectError, ErrorKind};

use crate::config::TransportKind;
use crate::session::{ClientEvent, ServerEvent};

/// How a link proves who it is.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `Authorization: Bearer` for the service: an ephemeral token (Realtime) or the API key
    /// (GPT-Live has no ephemeral tokens).
    pub bearer: Option<crate::config::Secret>,
    /// Where a WebRTC offer goes instead of the service: a backend that creates the session
    /// (GPT-Live's `api.session_url`).
    pub call_url: Option<String>,
    /// Extra headers for `call_url`.
    pub headers: std::collections::BTreeMap<String, crate::config::Secret>,
}

impl Credentials {
    pub fn bearer(token: &crate::config::Secret) -> Self {
        Credentials {
            bearer: Some(token.clone()),
            ..Credentials::default()
        }
    }
}

/// What a running link reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    Server(ServerEvent),
    /// The connection ended; no more events follow.
    Closed {
        reason: String,
    },
}

/// A connected transport.
pub struct Link {
    pub kind: TransportKind,
    pub commands: mpsc::Sender<ClientEvent>,
    pub events: mpsc::Receiver<LinkEvent>,
}

pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = Result<Link, ConnectError>> + Send + 'a>>;

/// Opens links. The real one fetches a token and dials the service; tests plug in their own.
pub trait Connector: Send + Sync {
    fn connect(&self, kind: TransportKind) -> ConnectFuture<'_>;

    /// Whether connecting could work at all: the reason when it cannot (no credentials), so
    /// that a Start is answered with NotConfigured at once. Checks no network.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// Audio packets lost each way over every link this connector opened.
    fn link_counts(&self) -> LinkCounts {
        LinkCounts::default()
    }

    /// The same connector for a new configuration (a reload), used from the next connect on;
    /// `None` keeps this one.
    fn reconfigured(
        &self,
        _config: &std::sync::Arc<crate::config::Config>,
    ) -> Option<std::sync::Arc<dyn Connector>> {
        None
    }
}

/// Used until a transport is configured: every connect fails with a clear reason.
pub struct Unavailable(pub String);

impl Connector for Unavailable {
    fn connect(&self, _kind: TransportKind) -> ConnectFuture<'_> {
        let reason = self.0.clone();
        Box::pin(async move { Err(ConnectError::fatal(reason)) })
    }
}

/// What a transport needs to open a link: the configuration, the audio engine's ports, and the
/// counters its links add to.
#[derive(Clone)]
pub struct LinkContext {
    pub config: std::sync::Arc<crate::config::Config>,
    pub microphone: crate::audio::Microphone,
    pub speaker: std::sync::Arc<dyn crate::audio::Speaker>,
    /// Told when each microphone frame goes on the wire.
    pub latency: std::sync::Arc<crate::audio::latency::LatencyMeter>,
    pub stats: std::sync::Arc<LinkStats>,
    /// Tools other programs offer: the dialects add them to the session's tools.
    pub provided: std::sync::Arc<crate::provided::ProvidedTools>,
}

impl LinkContext {
    pub fn new(
        config: std::sync::Arc<crate::config::Config>,
        microphone: crate::audio::Microphone,
        speaker: std::sync::Arc<dyn crate::audio::Speaker>,
    ) -> Self {
        LinkContext {
            config,
            microphone,
            speaker,
            latency: std::sync::Arc::default(),
            stats: std::sync::Arc::default(),
            provided: std::sync::Arc::default(),
        }
    }
}

/// Counters kept across the links of one context (one device), published on D-Bus in `Stats`.
#[derive(Debug, Default)]
pub struct LinkStats {
    packets_lost: std::sync::atomic::AtomicU64,
    uplink_packets_lost: std::sync::atomic::AtomicU64,
}

/// A reading of [`LinkStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounts {
    /// Incoming audio packets that never arrived (WebRTC).
    pub packets_lost: u64,
    /// The microphone's packets the service reports lost (WebRTC, from its RTCP reports).
    pub uplink_packets_lost: u64,
}

impl LinkStats {
    pub fn counts(&self) -> LinkCounts {
        LinkCounts {
            packets_lost: self.packets_lost(),
            uplink_packets_lost: self
                .uplink_packets_lost
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn add_uplink_packets_lost(&self, n: u64) {
        self.uplink_packets_lost
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Incoming audio packets that never arrived (WebRTC).
    pub fn packets_lost(&self) -> u64 {
        self.packets_lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn add_packets_lost(&self, n: u64) {
        self.packets_lost
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}
