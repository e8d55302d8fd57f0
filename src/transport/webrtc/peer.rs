//! What both ends of a WebRTC call share: the peer connection set up from the configuration,
//! the Opus track, RTP packing and unpacking with loss concealment, and the connection checks.
//! The daemon's client and the simulator's answerer are both built from these, so this is a
//! deliberate public API rather than the client's internals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodecParameters, RtpCodecKind};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionState, Registry, SettingEngineBuilder,
};

use super::media::*;
use super::uplink::{FarEndReports, ReportReader};
use crate::config::{Config, IcePolicy};

/// Nothing received on the selected pair for this long: ICE calls it disconnected.
pub const ICE_DISCONNECTED: Duration = Duration::from_secs(1);
/// Disconnected this long: failed.
const ICE_FAILED: Duration = Duration::from_secs(10);
/// Consent checks (STUN binding requests) while idle.
const ICE_KEEPALIVE: Duration = Duration::from_millis(500);
/// Connectivity checks while connecting: every 50 ms, up to 28 per pair (the library's 200 ms
/// × 7 tries, over the same 1.4 s).
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
const ICE_CHECKS: u16 = 28;

/// The data channel the service reads and writes JSON events on.
pub const EVENTS_LABEL: &str = "oai-events";

/// Where the peer connection binds and which servers it asks, decided from the configuration.
pub struct PeerSetup {
    pub ice_servers: Vec<RTCIceServer>,
    pub relay_only: bool,
    /// Local UDP addresses; `0.0.0.0:0` means every non-loopback interface.
    pub udp_addrs: Vec<String>,
    /// Loopback calls: keep loopback candidates (the simulator, tests).
    pub loopback: bool,
    /// A stand-in service on loopback: the ICE agent ticks every 20 ms once connected (and
    /// checks consent as often), not every 200. webrtc-rs 0.21 sends what it queues while
    /// handling its own events (the DTLS client's SCTP INIT) only at its next wake-up, which a
    /// real service does not make anyone wait for.
    pub fast_ticks: bool,
}

impl PeerSetup {
    pub fn from_config(config: &Config) -> Self {
        let t = &config.transport;
        for url in unsupported_turn_urls(config) {
            warn!("TURN server `{url}` is skipped: only TURN over UDP (turn:…, transport=udp) is supported");
        }
        let loopback_service = t.allow_loopback && host_is_loopback(&config.api.base_url);
        let ice_servers = t
            .ice_servers
            .iter()
            .filter_map(|s| {
                // A service on this machine is called from 127.0.0.1 only: a STUN or TURN server
                // elsewhere could not answer that socket, and only looking its name up would send
                // a DNS query off the machine (the default public STUN server on every call).
                // Servers on loopback themselves (a local TURN server) are still used.
                let urls: Vec<String> = if loopback_service {
                    let (here, elsewhere): (Vec<String>, Vec<String>) =
                        s.urls.iter().cloned().partition(|u| ice_url_is_loopback(u));
                    for url in elsewhere {
                        debug!("ICE server `{url}` skipped: the service is on loopback");
                    }
                    here
                } else {
                    s.urls.clone()
                };
                (!urls.is_empty()).then_some((s, urls))
            })
            .map(|(s, urls)| RTCIceServer {
                urls,
                username: s.username.clone().unwrap_or_default(),
                // The one place the TURN credential leaves its wrapper: it goes to the TURN
                // client and is never logged (RTCIceServer is not printed anywhere here).
                credential: s
                    .credential
                    .as_ref()
                    .map(|c| c.expose().to_owned())
                    .unwrap_or_default(),
            })
            .collect();
        let udp_addrs = if loopback_service {
            // A service on this machine is reached over loopback only: no other interface
            // needs to be offered (or touched).
            vec!["127.0.0.1:0".to_owned()]
        } else if t.allow_loopback {
            vec!["0.0.0.0:0".to_owned(), "127.0.0.1:0".to_owned()]
        } else {
            vec!["0.0.0.0:0".to_owned()]
        };
        PeerSetup {
            ice_servers,
            relay_only: t.ice_transport_policy == IcePolicy::Relay,
            udp_addrs,
            loopback: t.allow_loopback,
            fast_ticks: false,
        }
    }
}

/// TURN URLs the WebRTC stack cannot use: it speaks TURN over UDP only (no `turns:`, no TCP).
fn unsupported_turn_urls(config: &Config) -> Vec<&str> {
    config
        .transport
        .ice_servers
        .iter()
        .flat_map(|s| s.urls.iter())
        .map(String::as_str)
        .filter(|u| {
            let lower = u.to_ascii_lowercase();
            lower.starts_with("turns:")
                || (lower.starts_with("turn:") && lower.contains("transport=tcp"))
        })
        .collect()
}

/// Whether a STUN or TURN URL (`stun:host:port`, `turn:[::1]:3478?transport=udp`) names a
/// loopback address.
fn ice_url_is_loopback(url: &str) -> bool {
    let rest = url.split_once(':').map_or("", |(_, rest)| rest);
    let rest = rest.split('?').next().unwrap_or("");
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.rsplit_once(':').map_or(rest, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_is_loopback(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// What a peer connection reports, forwarded from the driver's callbacks into channels so that
/// the callbacks return at once (they run on the driver task).
pub struct PeerEvents {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
    reports: Arc<FarEndReports>,
}

/// The receiving ends of [`PeerEvents`].
pub struct PeerWatch {
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub gathered: watch::Receiver<bool>,
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
    pub channels: mpsc::Receiver<Arc<dyn DataChannel>>,
    /// The far end's reports on what we send.
    pub reports: Arc<FarEndReports>,
}

impl PeerEvents {
    pub fn new() -> (Arc<Self>, PeerWatch) {
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, gathered) = watch::channel(false);
        // A call has one remote track and one data channel; a few slots are plenty.
        let (tracks_tx, tracks) = mpsc::channel(4);
        let (channels_tx, channels) = mpsc::channel(4);
        let reports = Arc::new(FarEndReports::default());
        let events = Arc::new(PeerEvents {
            state: state_tx,
            gathered: gathered_tx,
            tracks: tracks_tx,
            channels: channels_tx,
            reports: reports.clone(),
        });
        (
            events,
            PeerWatch {
                state,
                gathered,
                tracks,
                channels,
                reports,
            },
        )
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!("peer connection {state}");
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.tracks.try_send(track).is_err() {
            warn!("ignoring an unexpected extra remote track");
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        if self.channels.try_send(channel).is_err() {
            warn!("ignoring an unexpected extra data channel");
        }
    }
}

/// Builds a peer connection that speaks Opus only.
pub async fn build_peer(
    setup: &PeerSetup,
    events: Arc<PeerEvents>,
) -> Result<Arc<dyn PeerConnection>, String> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| format!("cannot register Opus: {e}"))?;
    let registry = register_default_interceptors(Registry::new(), &mut media)
        .map_err(|e| format!("cannot set up RTP interceptors: {e}"))?
        // Only reads (after the reports' own interceptor); emits nothing.
        .with(
            Slot::from(10_500),
            ReportReader::new(events.reports.clone()),
        );
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(setup.ice_servers.clone())
        .with_ice_transport_policy(if setup.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        })
        .build();
    let mut settings = SettingEngineBuilder::new()
        // Consent checks twice a second, and a pair with nothing received for a second is
        // disconnected: a vanished service is noticed in seconds, not the default 5 + 25.
        .with_ice_timeouts(
            Some(ICE_DISCONNECTED),
            Some(ICE_FAILED),
            Some(ICE_KEEPALIVE),
        )
        // Checks every 50 ms rather than 200 while connecting (as many tries, over the same
        // 1.4 s): a pair that works is found, then nominated, a tick later each, so the
        // interval is paid twice on every connect.
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_CHECKS))
        // Neither end uses `.local` names; mDNS would only send multicast queries.
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        // session.updated echoes the whole session back: accept events as large as browsers
        // do (256 KiB) rather than SDP's 64 KiB default.
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(
            SctpMaxMessageSize::MAX_MESSAGE_SIZE,
        ));
    if setup.fast_ticks {
        settings = settings
            .with_ice_timeouts(
                Some(ICE_DISCONNECTED),
                Some(ICE_FAILED),
                Some(Duration::from_millis(20)),
            )
            .with_ice_connection_attempts(Some(Duration::from_millis(10)), Some(ICE_CHECKS * 5));
    }
    if setup.loopback {
        settings = settings
            .with_include_loopback_candidate(true)
            .with_network_types(vec![NetworkType::Udp4]);
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings.build())
        .with_handler(events)
        .with_udp_addrs(setup.udp_addrs.clone())
        .build()
        .await
        .map_err(|e| format!("cannot create the peer connection: {e}"))?;
    Ok(Arc::new(pc))
}

/// The selected candidate pair's types, e.g. `local relay`: whether a call went through TURN is
/// the first question when one is slow or fails.
pub async fn selected_path(pc: &Arc<dyn PeerConnection>) -> Option<String> {
    use webrtc::peer_connection::{RTCStatsReportEntry, StatsSelector};
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let pair_id = &report.transport()?.selected_candidate_pair_id;
    let Some(RTCStatsReportEntry::IceCandidatePair(pair)) = report.get(pair_id) else {
        return None;
    };
    // The pair names its candidates by their own ids, the report by prefixed ones.
    let kind = |id: &str| {
        report.iter().find_map(|e| match e {
            RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c)
                if e.id() == id || e.id().ends_with(&format!("_{id}")) =>
            {
                Some(format!("{}", c.candidate_type))
            }
            _ => None,
        })
    };
    let local = kind(&pair.local_candidate_id)?;
    // The remote side is not always in the report (a peer-reflexive candidate, say).
    Some(match kind(&pair.remote_candidate_id) {
        Some(remote) => format!("local {local}, remote {remote}"),
        None => format!("local {local}"),
    })
}

/// Waits until the connection is up and `channel` is open, or fails with why not. Returns the
/// text messages that arrived meanwhile: the driver may hand over the peer's first message
/// before the open event when both come in one flight (it happens through a TURN relay).
pub async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    channel: &Arc<dyn DataChannel>,
    deadline: tokio::time::Instant,
) -> Result<Vec<String>, String> {
    let mut open = false;
    let mut early = Vec::new();
    // webrtc-rs 0.21 queues the data channel's OPEN when SCTP comes up but sends it only at its
    // driver's next wake-up: on a quiet connection the ICE agent's tick, up to 200 ms later.
    // Any call that wakes the driver sends it; this one sets what is already set.
    let mut kick = tokio::time::interval(DRIVER_KICK);
    kick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let current = *state.borrow_and_update();
        match current {
            RTCPeerConnectionState::Connected if open => return Ok(early),
            RTCPeerConnectionState::Failed => {
                return Err("no network path to the service (ICE failed)".into())
            }
            RTCPeerConnectionState::Closed => return Err("the peer connection closed".into()),
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!(
                    "peer connection {current}, data channel {}",
                    if open { "open" } else { "not open" }
                ));
            }
            event = channel.poll(), if !open => match event {
                Some(DataChannelEvent::OnOpen) => open = true,
                Some(DataChannelEvent::OnMessage(message)) => {
                    if let Ok(text) = String::from_utf8(message.data.to_vec()) {
                        early.push(text);
                    }
                }
                Some(DataChannelEvent::OnClose) | None => {
                    return Err("the data channel closed before opening".into())
                }
                _ => {}
            },
            changed = state.changed() => if changed.is_err() {
                return Err("the peer connection stopped".into());
            },
            _ = kick.tick(), if !open => {
                let _ = channel.set_buffered_amount_low_threshold(0).await;
            }
        }
    }
}

/// How often [`wait_connected`] wakes webrtc-rs's driver until the data channel is open.
const DRIVER_KICK: Duration = Duration::from_millis(5);

/// Closes a peer connection that nobody else will: dropping one leaves its driver running.
pub struct CloseOnDrop(pub Option<Arc<dyn PeerConnection>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let (Some(pc), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

pub async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    #[test]
    fn loopback_service_binds_loopback_only() {
        let mut config = Config::default();
        config.api.base_url = "http://127.0.0.1:8080/v1".into();
        config.transport.allow_loopback = true;
        assert_eq!(
            PeerSetup::from_config(&config).udp_addrs,
            vec!["127.0.0.1:0"]
        );
        config.transport.allow_loopback = false;
        assert_eq!(PeerSetup::from_config(&config).udp_addrs, vec!["0.0.0.0:0"]);
    }

    #[test]
    fn a_loopback_service_asks_no_ice_server_elsewhere() {
        let mut config = Config::default();
        config.api.base_url = "http://127.0.0.1:8080/v1".into();
        config.transport.allow_loopback = true;
        // The default public STUN server is neither looked up nor asked.
        assert!(PeerSetup::from_config(&config).ice_servers.is_empty());
        config.transport.ice_servers = vec![crate::config::IceServer {
            urls: vec![
                "turn:127.0.0.1:3478?transport=udp".into(),
                "turn:turn.example:3478?transport=udp".into(),
                "stun:[::1]:3478".into(),
                "stun:localhost".into(),
            ],
            username: Some("u".into()),
            credential: Some(Secret::new("p")),
        }];
        let servers = PeerSetup::from_config(&config).ice_servers;
        assert_eq!(servers.len(), 1);
        assert_eq!(
            servers[0].urls,
            vec![
                "turn:127.0.0.1:3478?transport=udp",
                "stun:[::1]:3478",
                "stun:localhost"
            ]
        );
        assert_eq!(servers[0].credential, "p");
        // A service elsewhere keeps every server, loopback allowed or not.
        config.api.base_url = "https://api.openai.com/v1".into();
        assert_eq!(PeerSetup::from_config(&config).ice_servers[0].urls.len(), 4);
        config.transport.allow_loopback = false;
        config.api.base_url = "http://127.0.0.1:8080/v1".into();
        assert_eq!(PeerSetup::from_config(&config).ice_servers[0].urls.len(), 4);
        config.transport.ice_servers = Config::default().transport.ice_servers;
        assert_eq!(PeerSetup::from_config(&config).ice_servers.len(), 1);
    }

    #[test]
    fn turn_over_tls_or_tcp_is_named_as_unsupported() {
        let mut config = Config::default();
        config.transport.ice_servers = vec![crate::config::IceServer {
            urls: vec![
                "turn:turn.example:3478".into(),
                "turn:turn.example:3478?transport=udp".into(),
                "turn:turn.example:443?transport=tcp".into(),
                "turns:turn.example:443".into(),
                "stun:stun.example:3478".into(),
            ],
            username: Some("u".into()),
            credential: Some(Secret::new("p")),
        }];
        assert_eq!(
            unsupported_turn_urls(&config),
            vec![
                "turn:turn.example:443?transport=tcp",
                "turns:turn.example:443"
            ]
        );
    }
}
