//! Placing a call: the peer connection, the offer with its gathered candidates, the answer,
//! and the wait until media and the data channel are up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::RTCSessionDescription;

use super::call::Call;
use super::http::{http_client, post_offer};
use super::link::{pump_microphone, run_link, RunLink};
use super::media::*;
use super::peer::*;
use super::uplink::FarEndReports;
use crate::audio::opus::OpusProfile;
use crate::config::{Secret, TransportKind};
use crate::session::ServerEvent;
use crate::transport::dialect::{Decoded, Dialect};
use crate::transport::error::one_line;
use crate::transport::{ConnectError, Credentials, Link, LinkContext};

/// Longest wait for ICE gathering; an unreachable STUN server must not eat the whole connect
/// budget, and whatever was gathered by then goes into the offer.
const GATHER_CAP: Duration = Duration::from_secs(5);

/// Places a WebRTC call to the service with an ephemeral token (or key) and returns the
/// running link.
pub async fn connect(
    ctx: &LinkContext,
    dialect: Arc<dyn Dialect>,
    token: &Secret,
) -> Result<Link, ConnectError> {
    connect_with(ctx, dialect, &Credentials::bearer(token)).await
}

/// Places a WebRTC call with any [`Credentials`] (a backend that creates the session, say).
pub async fn connect_with(
    ctx: &LinkContext,
    dialect: Arc<dyn Dialect>,
    credentials: &Credentials,
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
        dialect: dialect.clone(),
        credentials: credentials.clone(),
        call_id: None,
    };
    let placed = place_call(&mut call, &mut watch, deadline, budget, setup.relay_only).await;
    guard.0 = None;
    match placed {
        Ok((channel, sender, reports, early)) => {
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
            let microphone = tokio::spawn(pump_microphone(
                ctx.microphone.clone(),
                sender,
                reports,
                ctx.latency.clone(),
                ctx.stats.clone(),
            ));
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
                    stats: ctx.stats.clone(),
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
                ..e
            })
        }
    }
}

/// A connected call: the data channel, the microphone's sender, the far end's reports on it,
/// and the messages that came before the channel said it was open.
type Placed = (
    Arc<dyn DataChannel>,
    OpusSender,
    Arc<FarEndReports>,
    Vec<String>,
);

/// Offer, POST, answer, connect. On error the caller ends the call.
pub(super) async fn place_call(
    call: &mut Call,
    watch: &mut PeerWatch,
    deadline: tokio::time::Instant,
    budget: Duration,
    relay_only: bool,
) -> Result<Placed, ConnectError> {
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
    let (answer, call_id) = post_offer(
        &call.http,
        &call.base,
        call.dialect.as_ref(),
        &call.credentials,
        offer_sdp,
        deadline,
    )
    .await?;
    call.call_id = call_id;
    let opus = OpusProfile::device_within(opus_max_average_bitrate(&answer));
    let answer = RTCSessionDescription::answer(answer).map_err(|e| {
        ConnectError::retry(format!(
            "WebRTC: the service's answer is not valid SDP: {e}"
        ))
    })?;
    call.pc
        .set_remote_description(answer)
        .await
        .map_err(|e| fail("cannot apply the service's answer", &e))?;

    let mut early = wait_connected(&mut watch.state, &channel, deadline)
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
    if call.dialect.awaits_start() {
        wait_started(call.dialect.as_ref(), &channel, &mut early, deadline).await?;
    }
    let payload_type = negotiated_opus(&sender)
        .await
        .ok_or_else(|| ConnectError::retry("WebRTC: the service's answer has no Opus audio"))?;
    debug!("sending Opus {opus}");
    let sender = OpusSender::new(track, ssrc, payload_type, opus)
        .map_err(|e| ConnectError::retry(format!("WebRTC: {e}")))?;
    Ok((channel, sender, watch.reports.clone(), early))
}

/// Waits on the data channel for the service to confirm the session (GPT-Live's
/// `session.started`), keeping every message for the link, that one included.
async fn wait_started(
    dialect: &dyn Dialect,
    channel: &Arc<dyn DataChannel>,
    early: &mut Vec<String>,
    deadline: tokio::time::Instant,
) -> Result<(), ConnectError> {
    let started = |text: &str| -> Result<bool, ConnectError> {
        match dialect.decode(text) {
            Decoded::Event(ServerEvent::SessionCreated { .. }) => Ok(true),
            Decoded::Event(ServerEvent::Error { code, message, .. }) => {
                let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
                Err(ConnectError::fatal(format!(
                    "WebRTC: the service refused to start the session: {}{code}",
                    one_line(&message, 300)
                )))
            }
            _ => Ok(false),
        }
    };
    for text in early.iter() {
        if started(text)? {
            return Ok(());
        }
    }
    loop {
        let event = tokio::time::timeout_at(deadline, channel.poll())
            .await
            .map_err(|_| {
                ConnectError::retry("WebRTC: the service did not confirm the session in time")
            })?;
        match event {
            Some(DataChannelEvent::OnMessage(message)) => {
                let Ok(text) = String::from_utf8(message.data.to_vec()) else {
                    continue;
                };
                let done = started(&text)?;
                early.push(text);
                if done {
                    return Ok(());
                }
            }
            Some(DataChannelEvent::OnClose) | None => {
                return Err(ConnectError::retry(
                    "WebRTC: the data channel closed before the session started",
                ))
            }
            _ => {}
        }
    }
}
