//! The WebRTC transport: one call to the service over a webrtc-rs peer connection.
//!
//! The offer carries one Opus send/receive audio section and the `oai-events` data channel. ICE
//! is gathered before the offer leaves (the service takes no trickled candidates); the offer is
//! POSTed to `{base}/realtime/calls`, the 201 answer applied, and the call id from `Location`
//! kept for the hang-up. Microphone frames are Opus-encoded onto the send track, the service's
//! track is decoded (lost packets concealed) into the speaker, and JSON events cross the data
//! channel through the wire dialect.
//!
//! The pieces both ends of a call need (peer set-up, the Opus track, RTP packing and
//! unpacking) are `pub(crate)` so that the simulator's answerer uses the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::dialect::{Decoded, Dialect};
use super::{ConnectError, Link, LinkContext, LinkEvent};
use crate::audio::opus::{OpusDecoder, OpusEncoder, MAX_PACKET};
use crate::audio::{Frame, Microphone, FRAME_SAMPLES};
use crate::config::{Config, IcePolicy, Secret, TransportKind};
use crate::session::{ClientEvent, ServerEvent};

/// The data channel the service reads and writes JSON events on.
pub const EVENTS_LABEL: &str = "oai-events";
/// Payload type the service uses for Opus; the answer decides, this is only our offer.
const OPUS_PAYLOAD_TYPE: u8 = 111;
/// How long ICE may stay `disconnected` before the link is declared lost: long enough to ride
/// out a Wi-Fi hiccup, short enough that the user is not left talking to nobody.
const DISCONNECT_GRACE: Duration = Duration::from_secs(4);
/// Longest wait for ICE gathering; an unreachable STUN server must not eat the whole connect
/// budget, and whatever was gathered by then goes into the offer.
const GATHER_CAP: Duration = Duration::from_secs(5);
/// The hang-up is a courtesy to the service; never hold up a reconnect or shutdown for it.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Packets lost in a row that are still worth concealing; beyond that, silence is better than
/// a long synthetic tail.
const MAX_CONCEAL: u16 = 10;
/// A pause in the microphone stream longer than this starts a new talk spurt on the wire.
const TALKSPURT_GAP: Duration = Duration::from_millis(60);
/// Bytes of payload buffer reserved at a time; packets share it until all are sent.
const PAYLOAD_ARENA: usize = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Shared by both ends of a call.

/// Opus as both ends of a call offer it: 48 kHz, two channels in SDP (as RFC 7587 requires,
/// whatever is actually sent), in-band FEC.
pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Where the peer connection binds and which servers it asks, decided from the configuration.
pub(crate) struct PeerSetup {
    pub ice_servers: Vec<RTCIceServer>,
    pub relay_only: bool,
    /// Local UDP addresses; `0.0.0.0:0` means every non-loopback interface.
    pub udp_addrs: Vec<String>,
    /// Loopback calls: keep loopback candidates (the simulator, tests).
    pub loopback: bool,
}

impl PeerSetup {
    fn from_config(config: &Config) -> Self {
        let t = &config.transport;
        for url in unsupported_turn_urls(config) {
            warn!("TURN server `{url}` is skipped: only TURN over UDP (turn:…, transport=udp) is supported");
        }
        let ice_servers = t
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
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
        let loopback_service = t.allow_loopback && host_is_loopback(&config.api.base_url);
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
pub(crate) struct PeerEvents {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
}

/// The receiving ends of [`PeerEvents`].
pub(crate) struct PeerWatch {
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub gathered: watch::Receiver<bool>,
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
    pub channels: mpsc::Receiver<Arc<dyn DataChannel>>,
}

impl PeerEvents {
    pub(crate) fn new() -> (Arc<Self>, PeerWatch) {
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, gathered) = watch::channel(false);
        // A call has one remote track and one data channel; a few slots are plenty.
        let (tracks_tx, tracks) = mpsc::channel(4);
        let (channels_tx, channels) = mpsc::channel(4);
        let events = Arc::new(PeerEvents {
            state: state_tx,
            gathered: gathered_tx,
            tracks: tracks_tx,
            channels: channels_tx,
        });
        (
            events,
            PeerWatch {
                state,
                gathered,
                tracks,
                channels,
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
pub(crate) async fn build_peer(
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
        .map_err(|e| format!("cannot set up RTP interceptors: {e}"))?;
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(setup.ice_servers.clone())
        .with_ice_transport_policy(if setup.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        })
        .build();
    let mut settings = SettingEngineBuilder::new()
        // Neither end uses `.local` names; mDNS would only send multicast queries.
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        // session.updated echoes the whole session back: accept events as large as browsers
        // do (256 KiB) rather than SDP's 64 KiB default.
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(
            SctpMaxMessageSize::MAX_MESSAGE_SIZE,
        ));
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

/// A local Opus track with a fresh SSRC.
pub(crate) fn opus_track(name: &str) -> (Arc<TrackLocalStaticRTP>, u32) {
    let ssrc = rand::random::<u32>();
    let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("{name}-stream"),
        format!("{name}-audio"),
        format!("{name}-audio"),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    ));
    (Arc::new(track), ssrc)
}

/// The payload type negotiated for Opus on `sender` (known once the answer is applied).
pub(crate) async fn negotiated_opus(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    let params = sender.get_parameters().await.ok()?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
        .map(|c| c.payload_type)
}

/// Packs 20 ms frames into Opus RTP packets on a local track.
pub(crate) struct OpusSender {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    last_sent: Option<Instant>,
    encoder: OpusEncoder,
    packet: [u8; MAX_PACKET],
    /// Payloads are cut from this arena; it is reclaimed once the sent packets are dropped.
    arena: BytesMut,
}

impl OpusSender {
    pub(crate) fn new(
        track: Arc<TrackLocalStaticRTP>,
        ssrc: u32,
        payload_type: u8,
    ) -> Result<Self, String> {
        Ok(OpusSender {
            track,
            ssrc,
            payload_type,
            sequence: rand::random(),
            timestamp: rand::random(),
            last_sent: None,
            encoder: OpusEncoder::new().map_err(|e| e.to_string())?,
            packet: [0; MAX_PACKET],
            arena: BytesMut::with_capacity(PAYLOAD_ARENA),
        })
    }

    /// Encodes and sends one frame captured at `now`.
    pub(crate) async fn send(&mut self, frame: &Frame, now: Instant) -> Result<(), String> {
        let n = self
            .encoder
            .encode(frame, &mut self.packet)
            .map_err(|e| e.to_string())?;
        let (timestamp, marker) = next_timestamp(self.timestamp, self.last_sent, now);
        self.last_sent = Some(now);
        if self.arena.capacity() < n {
            self.arena.reserve(PAYLOAD_ARENA);
        }
        self.arena.extend_from_slice(&self.packet[..n]);
        let payload = self.arena.split().freeze();
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.payload_type,
                sequence_number: self.sequence,
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.track
            .write_rtp(packet)
            .await
            .map_err(|e| format!("cannot send audio: {e}"))
    }
}

/// The RTP timestamp of the frame captured at `now`, and whether it starts a talk spurt: after
/// a pause in capture the clock has run on, so the timestamp jumps by the time that passed
/// (receivers' jitter buffers depend on it) and the marker bit is set.
fn next_timestamp(next: u32, last_sent: Option<Instant>, now: Instant) -> (u32, bool) {
    match last_sent {
        None => (next, true),
        Some(last) => {
            let gap = now.saturating_duration_since(last);
            if gap > TALKSPURT_GAP {
                // Frames that would have been sent during the pause, this one excluded.
                let skipped = (gap.as_millis() / 20).saturating_sub(1) as u32;
                (
                    next.wrapping_add(skipped.wrapping_mul(FRAME_SAMPLES as u32)),
                    true,
                )
            } else {
                (next, false)
            }
        }
    }
}

/// Incoming audio packets that never arrived, over every call of this process (one process is
/// one device): published on D-Bus in `Stats`.
static PACKETS_LOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn packets_lost() -> u64 {
    PACKETS_LOST.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns a stream of Opus RTP payloads back into PCM, concealing lost packets (from the next
/// packet's FEC data where it can) and dropping late or repeated ones.
pub(crate) struct OpusReceiver {
    decoder: OpusDecoder,
    last_sequence: Option<u16>,
    out: [i16; FRAME_SAMPLES * 6],
    hole: Frame,
    pub concealed: u64,
    pub late: u64,
}

impl OpusReceiver {
    pub(crate) fn new() -> Result<Self, String> {
        Ok(OpusReceiver {
            decoder: OpusDecoder::new().map_err(|e| e.to_string())?,
            last_sequence: None,
            out: [0; FRAME_SAMPLES * 6],
            hole: [0; FRAME_SAMPLES],
            concealed: 0,
            late: 0,
        })
    }

    /// Feeds one packet; `sink` receives the PCM (48 kHz mono) it yields, in order.
    pub(crate) fn on_packet(
        &mut self,
        sequence: u16,
        payload: &[u8],
        sink: &mut dyn FnMut(&[i16]),
    ) {
        if let Some(last) = self.last_sequence {
            let ahead = sequence.wrapping_sub(last);
            if ahead == 0 || ahead >= 0x8000 {
                // A repeat, or a packet whose slot was already concealed.
                self.late += 1;
                return;
            }
            let missing = ahead - 1;
            PACKETS_LOST.fetch_add(u64::from(missing), std::sync::atomic::Ordering::Relaxed);
            if missing > 0 && missing <= MAX_CONCEAL {
                for i in 0..missing {
                    // The packet at hand carries FEC for the one just before it.
                    let next = (i + 1 == missing && !payload.is_empty()).then_some(payload);
                    match self.decoder.conceal(next, &mut self.hole) {
                        Ok(n) => sink(&self.hole[..n.min(FRAME_SAMPLES)]),
                        Err(e) => debug!("{e}"),
                    }
                    self.concealed += 1;
                }
            }
        }
        self.last_sequence = Some(sequence);
        if payload.is_empty() {
            return;
        }
        match self.decoder.decode(payload, &mut self.out) {
            Ok(n) => sink(&self.out[..n]),
            Err(e) => debug!("dropping an undecodable audio packet: {e}"),
        }
    }
}

/// Decodes a remote Opus track into `sink` until the track ends.
pub(crate) async fn receive_opus(track: Arc<dyn TrackRemote>, mut sink: impl FnMut(&[i16]) + Send) {
    if track.kind().await != RtpCodecKind::Audio {
        return;
    }
    let mut receiver = match OpusReceiver::new() {
        Ok(r) => r,
        Err(e) => {
            warn!("remote audio is lost: {e}");
            return;
        }
    };
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                receiver.on_packet(packet.header.sequence_number, &packet.payload, &mut sink)
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    debug!(
        "remote audio ended ({} packets concealed, {} late)",
        receiver.concealed, receiver.late
    );
}

/// The selected candidate pair's types, e.g. `local relay`: whether a call went through TURN is
/// the first question when one is slow or fails.
pub(crate) async fn selected_path(pc: &Arc<dyn PeerConnection>) -> Option<String> {
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
pub(crate) async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    channel: &Arc<dyn DataChannel>,
    deadline: tokio::time::Instant,
) -> Result<Vec<String>, String> {
    let mut open = false;
    let mut early = Vec::new();
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
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

/// Places a WebRTC call to the service and returns the running link.
pub async fn connect(
    ctx: &LinkContext,
    dialect: Arc<dyn Dialect>,
    token: &Secret,
) -> Result<Link, ConnectError> {
    let started = Instant::now();
    let config = &ctx.config;
    let budget = Duration::from_millis(config.transport.connect_timeout_ms);
    let deadline = tokio::time::Instant::now() + budget;
    let http = http_client()?;
    let base = config.api.base_url.trim_end_matches('/').to_owned();

    let (events, mut watch) = PeerEvents::new();
    let setup = PeerSetup::from_config(config);
    let pc = build_peer(&setup, events)
        .await
        .map_err(|e| ConnectError::retry(format!("WebRTC: {e}")))?;
    // If this future is dropped half-way (a caller's timeout), the driver must not run on.
    let mut guard = CloseOnDrop(Some(pc.clone()));
    let mut call = Call {
        pc,
        http,
        base,
        token: token.clone(),
        call_id: None,
    };
    let placed = place_call(&mut call, &mut watch, deadline, budget, setup.relay_only).await;
    guard.0 = None;
    match placed {
        Ok((channel, sender, early)) => {
            let elapsed = started.elapsed();
            info!(
                "WebRTC call {} connected in {} ms ({})",
                call.call_id.as_deref().unwrap_or("(no id)"),
                elapsed.as_millis(),
                selected_path(&call.pc)
                    .await
                    .unwrap_or_else(|| "path unknown".into())
            );
            let (commands_tx, commands) = mpsc::channel(64);
            let (events_tx, events) = mpsc::channel(256);
            let microphone = tokio::spawn(pump_microphone(ctx.microphone.clone(), sender));
            let speaker = ctx.speaker.clone();
            tokio::spawn(run_link(
                call,
                RunLink {
                    dialect,
                    channel,
                    early,
                    watch,
                    commands,
                    events: events_tx,
                    microphone,
                    speaker,
                },
            ));
            Ok(Link {
                kind: TransportKind::Webrtc,
                commands: commands_tx,
                events,
            })
        }
        Err(e) => {
            call.end().await;
            // Errors quote the other side (SDP parser output, response bodies): keep them to
            // one line for the log and the D-Bus status.
            Err(ConnectError {
                message: one_line(&e.message, 400),
                retry: e.retry,
            })
        }
    }
}

fn http_client() -> Result<reqwest::Client, ConnectError> {
    // reqwest is built without a bundled crypto provider; make sure one is installed (a no-op
    // when the daemon already did it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("realtime-voiced/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConnectError::retry(format!("cannot create an HTTP client: {e}")))
}

/// Closes a peer connection that nobody else will: dropping one leaves its driver running.
pub(crate) struct CloseOnDrop(pub Option<Arc<dyn PeerConnection>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let (Some(pc), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// A call in progress: what the hang-up needs.
struct Call {
    pc: Arc<dyn PeerConnection>,
    http: reqwest::Client,
    base: String,
    token: Secret,
    call_id: Option<String>,
}

impl Call {
    /// Closes the peer connection and, if the service knows of the call, hangs it up.
    async fn end(self) {
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

async fn hang_up(http: &reqwest::Client, base: &str, call_id: &str, token: &Secret) {
    let url = format!("{base}/realtime/calls/{call_id}/hangup");
    let result = http
        .post(&url)
        .bearer_auth(token.expose())
        .timeout(HANGUP_TIMEOUT)
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => debug!("hung up call {call_id}"),
        Ok(r) => debug!("hang-up of call {call_id}: HTTP {}", r.status()),
        Err(e) => debug!("hang-up of call {call_id}: {}", error_chain(&e)),
    }
}

/// Offer, POST, answer, connect. On error the caller ends the call.
async fn place_call(
    call: &mut Call,
    watch: &mut PeerWatch,
    deadline: tokio::time::Instant,
    budget: Duration,
    relay_only: bool,
) -> Result<(Arc<dyn DataChannel>, OpusSender, Vec<String>), ConnectError> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| ConnectError::retry(format!("WebRTC: {what}: {e}"));
    let (track, ssrc) = opus_track("mic");
    let sender = call
        .pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| fail("cannot add the audio track", &e))?;
    let channel = call
        .pc
        .create_data_channel(EVENTS_LABEL, None)
        .await
        .map_err(|e| fail("cannot create the data channel", &e))?;
    let offer = call
        .pc
        .create_offer(None)
        .await
        .map_err(|e| fail("cannot create the offer", &e))?;
    call.pc
        .set_local_description(offer)
        .await
        .map_err(|e| fail("cannot apply the offer", &e))?;

    let gather_until = deadline.min(tokio::time::Instant::now() + GATHER_CAP);
    if tokio::time::timeout_at(gather_until, watch.gathered.wait_for(|g| *g))
        .await
        .is_err()
    {
        debug!("ICE gathering still running; offering the candidates found so far");
    }
    let offer_sdp = call
        .pc
        .local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| ConnectError::retry("WebRTC: no local description after the offer"))?;

    if relay_only && !offer_sdp.contains(" typ relay") {
        // Nothing to offer: fail now, with the likely cause, rather than at the timeout.
        return Err(ConnectError::retry(
            "WebRTC: ice_transport_policy is \"relay\" but no TURN relay was allocated \
             (check the TURN server's URL, username and credential; only TURN over UDP is \
             supported)",
        ));
    }
    let (answer, call_id) = post_offer(call, offer_sdp, deadline).await?;
    call.call_id = call_id;
    let answer = RTCSessionDescription::answer(answer).map_err(|e| {
        ConnectError::retry(format!(
            "WebRTC: the service's answer is not valid SDP: {e}"
        ))
    })?;
    call.pc
        .set_remote_description(answer)
        .await
        .map_err(|e| fail("cannot apply the service's answer", &e))?;

    let early = wait_connected(&mut watch.state, &channel, deadline)
        .await
        .map_err(|e| {
            if tokio::time::Instant::now() >= deadline {
                ConnectError::retry(format!(
                    "WebRTC: not connected within {} ms ({e})",
                    budget.as_millis()
                ))
            } else {
                ConnectError::retry(format!("WebRTC: {e}"))
            }
        })?;
    let payload_type = negotiated_opus(&sender)
        .await
        .ok_or_else(|| ConnectError::retry("WebRTC: the service's answer has no Opus audio"))?;
    let sender = OpusSender::new(track, ssrc, payload_type)
        .map_err(|e| ConnectError::retry(format!("WebRTC: {e}")))?;
    Ok((channel, sender, early))
}

/// POSTs the offer; returns the answer SDP and the call id.
async fn post_offer(
    call: &Call,
    offer: String,
    deadline: tokio::time::Instant,
) -> Result<(String, Option<String>), ConnectError> {
    let url = format!("{}/realtime/calls", call.base);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let response = call
        .http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .bearer_auth(call.token.expose())
        .body(offer)
        .timeout(remaining.max(Duration::from_millis(1)))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                ConnectError::retry(format!("WebRTC: no answer from {url} in time"))
            } else {
                ConnectError::retry(format!("WebRTC: cannot reach {url}: {}", error_chain(&e)))
            }
        })?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let call_id = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(call_id_from_location);
    let body = response.text().await.map_err(|e| {
        ConnectError::retry(format!(
            "WebRTC: reading the answer from {url}: {}",
            error_chain(&e)
        ))
    })?;
    if !(status == reqwest::StatusCode::CREATED || status == reqwest::StatusCode::OK) {
        let message = format!(
            "WebRTC: the service refused the call (HTTP {}): {}",
            status.as_u16(),
            error_message(&body)
        );
        return Err(
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                ConnectError::fatal(message)
            } else {
                ConnectError::retry(message)
            },
        );
    }
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/sdp" {
        return Err(ConnectError::retry(format!(
            "WebRTC: {url} answered with content type `{}` instead of application/sdp (is api.base_url right?)",
            one_line(&content_type, 60)
        )));
    }
    if call_id.is_none() {
        warn!("the service's answer has no Location header; the call cannot be hung up");
    }
    Ok((body, call_id))
}

/// `Location: /v1/realtime/calls/rtc_123` → `rtc_123`.
fn call_id_from_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?.trim_end_matches('/');
    let id = path.rsplit('/').next()?;
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    valid.then(|| id.to_owned())
}

/// The service's `error.message`, or the start of whatever else the body was, on one line.
fn error_message(body: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .and_then(|m| m.as_str())
            .or_else(|| v.get("message").and_then(|m| m.as_str()))
    });
    match message {
        Some(m) => one_line(m, 300),
        None if body.trim().is_empty() => "(no details)".into(),
        None => one_line(body, 200),
    }
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max_chars {
        let cut: String = flat.chars().take(max_chars).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// An error with its causes, which reqwest keeps out of its own message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    one_line(&text, 300)
}

/// Microphone to Opus track, for as long as the link lives (the task is aborted at the end,
/// which releases the microphone).
async fn pump_microphone(microphone: Microphone, mut sender: OpusSender) {
    let mut frames = microphone.lock_owned().await;
    let mut failures: u64 = 0;
    while let Some(frame) = frames.recv().await {
        if let Err(e) = sender.send(&frame, Instant::now()).await {
            failures += 1;
            if failures == 1 || failures.is_power_of_two() {
                warn!("{e} ({failures} frames lost)");
            }
        }
    }
}

struct RunLink {
    dialect: Arc<dyn Dialect>,
    channel: Arc<dyn DataChannel>,
    /// Messages that arrived before the channel reported open.
    early: Vec<String>,
    watch: PeerWatch,
    commands: mpsc::Receiver<ClientEvent>,
    events: mpsc::Sender<LinkEvent>,
    microphone: tokio::task::JoinHandle<()>,
    speaker: Arc<dyn crate::audio::Speaker>,
}

/// The link's life: events both ways, the remote track into the speaker, and the health of the
/// connection. Returns when the link ends, after hanging up.
async fn run_link(call: Call, mut link: RunLink) {
    let mut receivers = Vec::new();
    let mut grace: Option<tokio::time::Instant> = None;
    for text in std::mem::take(&mut link.early) {
        if let Decoded::Event(event) = link.dialect.decode(&text) {
            let _ = link.events.send(LinkEvent::Server(event)).await;
        }
    }
    let reason: Option<String> = loop {
        tokio::select! {
            command = link.commands.recv() => match command {
                Some(event) => {
                    let text = link.dialect.encode(&event);
                    match link.channel.send_text(&text).await {
                        Ok(()) => {}
                        Err(webrtc::error::Error::ErrOutboundPacketTooLarge) => {
                            // Reconnecting would fail the same way: report it and carry on.
                            let message = format!(
                                "an event of {} bytes is larger than the service accepts \
                                 (shorten session.instructions or the tools)",
                                text.len()
                            );
                            warn!("{message}");
                            let error = ServerEvent::Error {
                                code: Some("event_too_large".into()),
                                message,
                            };
                            if link.events.send(LinkEvent::Server(error)).await.is_err() {
                                break None;
                            }
                        }
                        Err(e) => break Some(format!("cannot send on the data channel: {e}")),
                    }
                }
                None => break None,
            },
            event = link.channel.poll() => match event {
                Some(DataChannelEvent::OnMessage(message)) => {
                    let Ok(text) = std::str::from_utf8(&message.data) else {
                        debug!("ignoring a binary data-channel message");
                        continue;
                    };
                    match link.dialect.decode(text) {
                        Decoded::Event(event) => {
                            let delivered = link.events.send(LinkEvent::Server(event)).await;
                            if delivered.is_err() {
                                break None;
                            }
                        }
                        Decoded::Malformed(why) => warn!("malformed event from the service: {why:?}"),
                        _ => {}
                    }
                }
                Some(DataChannelEvent::OnClose) | None => {
                    break Some("the service closed the data channel".into());
                }
                _ => {}
            },
            Some(track) = link.watch.tracks.recv() => {
                let speaker = link.speaker.clone();
                receivers.push(tokio::spawn(receive_opus(track, move |pcm| speaker.push(pcm))));
            }
            changed = link.watch.state.changed() => {
                if changed.is_err() {
                    break Some("the peer connection stopped".into());
                }
                let state = *link.watch.state.borrow_and_update();
                match state {
                    RTCPeerConnectionState::Connected => grace = None,
                    RTCPeerConnectionState::Disconnected => {
                        grace.get_or_insert(tokio::time::Instant::now() + DISCONNECT_GRACE);
                    }
                    RTCPeerConnectionState::Failed => break Some("connection to the service failed".into()),
                    RTCPeerConnectionState::Closed => break Some("the peer connection closed".into()),
                    _ => {}
                }
            }
            _ = sleep_until_opt(grace) => {
                break Some(format!(
                    "connection to the service lost (no media path for {} s)",
                    DISCONNECT_GRACE.as_secs()
                ));
            }
        }
    };
    link.microphone.abort();
    let call_id = call.call_id.clone();
    call.end().await;
    for r in receivers {
        r.abort();
    }
    match reason {
        Some(reason) => {
            info!(
                "WebRTC call {} ended: {reason}",
                call_id.as_deref().unwrap_or("(no id)")
            );
            let _ = link.events.send(LinkEvent::Closed { reason }).await;
        }
        None => {
            debug!(
                "WebRTC call {} hung up",
                call_id.as_deref().unwrap_or("(no id)")
            );
            let _ = link.events.try_send(LinkEvent::Closed {
                reason: "hung up".into(),
            });
        }
    }
}

pub(crate) async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_id_comes_from_the_location_path() {
        assert_eq!(
            call_id_from_location("/v1/realtime/calls/rtc_abc123").as_deref(),
            Some("rtc_abc123")
        );
        assert_eq!(
            call_id_from_location("https://api.example/v1/realtime/calls/rtc-9/?x=1").as_deref(),
            Some("rtc-9")
        );
        // Only a plain id is used in the hang-up URL.
        assert_eq!(call_id_from_location("/v1/realtime/calls/.."), None);
        assert_eq!(call_id_from_location("/v1/realtime/calls/a%2Fb"), None);
        assert_eq!(call_id_from_location(""), None);
    }

    #[test]
    fn error_message_prefers_the_services_json() {
        let body = r#"{"error":{"message":"Invalid ephemeral key.\nTry again","type":"invalid_request_error"}}"#;
        assert_eq!(error_message(body), "Invalid ephemeral key. Try again");
        assert_eq!(error_message(""), "(no details)");
        assert_eq!(
            error_message("<html>\n<b>Bad gateway</b></html>"),
            "<html> <b>Bad gateway</b></html>"
        );
        let long = "x".repeat(1000);
        assert_eq!(error_message(&long).chars().count(), 201);
    }

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

    #[test]
    fn timestamps_run_on_through_pauses() {
        let t0 = Instant::now();
        assert_eq!(next_timestamp(1000, None, t0), (1000, true));
        let (ts, marker) = next_timestamp(1960, Some(t0), t0 + Duration::from_millis(20));
        assert_eq!((ts, marker), (1960, false));
        // One second of silence: 49 frames were never sent before this one.
        let (ts, marker) = next_timestamp(1960, Some(t0), t0 + Duration::from_millis(1000));
        assert_eq!((ts, marker), (1960 + 49 * 960, true));
    }

    fn encoded_tone(frames: usize) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new().expect("encoder");
        let mut packet = [0u8; MAX_PACKET];
        (0..frames)
            .map(|f| {
                let mut frame = [0i16; FRAME_SAMPLES];
                for (i, s) in frame.iter_mut().enumerate() {
                    let t = (f * FRAME_SAMPLES + i) as f64 / 48_000.0;
                    *s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
                }
                let n = enc.encode(&frame, &mut packet).expect("encode");
                packet[..n].to_vec()
            })
            .collect()
    }

    #[test]
    fn receiver_conceals_gaps_and_drops_late_packets() {
        let packets = encoded_tone(20);
        let lost_before = packets_lost();
        let mut rx = OpusReceiver::new().expect("receiver");
        let mut samples = 0usize;
        let mut sink = |pcm: &[i16]| samples += pcm.len();
        // Sequence numbers wrap around 65535 on purpose.
        let base = 65_530u16;
        for (i, p) in packets.iter().enumerate() {
            if i == 5 || i == 6 || i == 12 {
                continue; // lost
            }
            rx.on_packet(base.wrapping_add(i as u16), p, &mut sink);
        }
        // A late copy of an already concealed packet, and a duplicate.
        rx.on_packet(base.wrapping_add(5), &packets[5], &mut sink);
        rx.on_packet(base.wrapping_add(19), &packets[19], &mut sink);
        assert_eq!(rx.concealed, 3);
        assert_eq!(rx.late, 2);
        // Other tests may add to the process-wide count meanwhile, never take from it.
        assert!(
            packets_lost() - lost_before >= 3,
            "losses reach the D-Bus counter"
        );
        assert_eq!(
            samples,
            20 * FRAME_SAMPLES,
            "every 20 ms slot is filled exactly once"
        );
    }
}
