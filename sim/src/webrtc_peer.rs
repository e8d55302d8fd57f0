//! The simulator's WebRTC answerer: a webrtc-rs peer on 127.0.0.1 that answers a call's offer
//! with Opus and runs a [`Brain`] in WebRTC mode for it.
//!
//! Data-channel messages go to [`Brain::on_client_event`], the caller's decoded Opus to
//! [`Brain::on_audio`]; what the brain emits goes back as data-channel events and as Opus
//! frames on the answerer's own track, paced by [`Brain::poll`] and [`Brain::next_deadline`].
//! The call ends when the brain says so, when the caller goes away, or when it is hung up
//! ([`Sim::hang_up`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelState};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use super::brain::{Brain, Mode, SimOutput};
use super::live::{Conversation, LiveFront};
use super::{Reply, Sim};
use realtime_voiced::audio::opus::OpusProfile;
use realtime_voiced::audio::{Frame, FRAME_SAMPLES};
use realtime_voiced::transport::webrtc::media::{
    negotiated_opus, opus_track, receive_opus, OpusSender,
};
use realtime_voiced::transport::webrtc::peer::{
    build_peer, sleep_until_opt, CloseOnDrop, PeerEvents, PeerSetup, PeerWatch,
};

/// The SDP answer and the call id the `Location` header names.
pub struct Answer {
    pub sdp: String,
    pub call_id: String,
}

/// How long the caller has to open its data channel once the answer is out.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// ICE gathering on loopback is immediate; this only bounds a broken host.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long ICE may stay `disconnected` before the call is dropped.
const DISCONNECT_GRACE: Duration = Duration::from_secs(3);

/// Which API a call speaks: the Realtime API, or GPT-Live with the session its create request
/// carried.
#[derive(Clone)]
pub enum Api {
    Realtime,
    Live(serde_json::Value),
}

/// Answers `offer_sdp` and runs the call in a task of its own.
pub async fn answer(sim: Arc<Sim>, offer_sdp: String, api: Api) -> Result<Answer, String> {
    let offer = RTCSessionDescription::offer(offer_sdp)
        .map_err(|e| format!("The SDP offer does not parse: {e}"))?;
    let (events, mut watch) = PeerEvents::new();
    let setup = PeerSetup {
        ice_servers: Vec::new(),
        relay_only: false,
        udp_addrs: vec!["127.0.0.1:0".to_owned()],
        loopback: true,
        fast_ticks: !sim.options.slow_ice,
    };
    let pc = build_peer(&setup, events).await?;
    // The HTTP request may be abandoned mid-way; the peer must not outlive it then.
    let mut guard = CloseOnDrop(Some(pc.clone()));
    let negotiated = negotiate(&pc, offer, &mut watch).await;
    guard.0 = None;
    match negotiated {
        Ok((sdp, track, ssrc, sender)) => {
            let call_id = sim.next_id(match api {
                Api::Realtime => "rtc",
                Api::Live(_) => "live",
            });
            // Fires on `POST /v1/realtime/calls/{id}/hangup`.
            let hangup = sim.register_call(&call_id);
            tokio::spawn(run_call(
                sim,
                Call {
                    id: call_id.clone(),
                    pc,
                    watch,
                    track,
                    ssrc,
                    sender,
                    hangup,
                    api,
                },
            ));
            Ok(Answer { sdp, call_id })
        }
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

type Negotiated = (
    String,
    Arc<webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP>,
    u32,
    Arc<dyn RtpSender>,
);

async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    offer: RTCSessionDescription,
    watch: &mut PeerWatch,
) -> Result<Negotiated, String> {
    let (track, ssrc) = opus_track("sim");
    let sender = pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| format!("cannot add the audio track: {e}"))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| format!("cannot apply the offer: {e}"))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| format!("cannot answer the offer: {e}"))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| format!("cannot apply the answer: {e}"))?;
    if tokio::time::timeout(GATHER_TIMEOUT, watch.gathered.wait_for(|g| *g))
        .await
        .is_err()
    {
        debug!("answering with the candidates gathered so far");
    }
    let sdp = pc
        .local_description()
        .await
        .map(|d| d.sdp)
        .ok_or("no local description after answering")?;
    Ok((sdp, track, ssrc, sender))
}

struct Call {
    id: String,
    pc: Arc<dyn PeerConnection>,
    watch: PeerWatch,
    track: Arc<webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP>,
    ssrc: u32,
    sender: Arc<dyn RtpSender>,
    hangup: oneshot::Receiver<()>,
    api: Api,
}

async fn run_call(sim: Arc<Sim>, mut call: Call) {
    let reason = match converse(&sim, &mut call).await {
        Ok(reason) => reason,
        Err(e) => {
            warn!(call = %call.id, "{e}");
            e
        }
    };
    info!(call = %call.id, "call ended: {reason}");
    sim.hang_up(&call.id);
    let _ = call.pc.close().await;
}

/// The call's life; returns why it ended.
async fn converse(sim: &Sim, call: &mut Call) -> Result<String, String> {
    let channel = tokio::time::timeout(OPEN_TIMEOUT, call.watch.channels.recv())
        .await
        .map_err(|_| "the caller opened no data channel".to_owned())?
        .ok_or("the peer connection stopped")?;
    let early = wait_open(&channel).await?;
    let payload_type = negotiated_opus(&call.sender)
        .await
        .ok_or("no Opus was negotiated")?;
    // As a service sends: VOIP, as libwebrtc codes speech.
    let mut opus = OpusSender::new(
        call.track.clone(),
        call.ssrc,
        payload_type,
        OpusProfile::SERVICE,
    )?;

    let mut brain = match &call.api {
        Api::Realtime => Conversation::Realtime(Box::new(Brain::for_sim(sim, Mode::WebRtc))),
        Api::Live(session) => Conversation::Live(Box::new(LiveFront::webrtc(sim, session.clone()))),
    };
    debug!(call = %call.id, session = %brain.session_id(), "data channel open");
    for text in &early {
        brain.on_client_event(text, Instant::now());
    }
    // Decoded caller audio, regrouped into 20 ms frames by the receive task.
    let (pcm_tx, mut pcm_rx) = mpsc::channel::<Frame>(64);
    let mut receivers = Vec::new();
    let mut grace: Option<tokio::time::Instant> = None;
    let mut hangup_gone = false;

    let reason = loop {
        // Everything due goes out before waiting again.
        let now = Instant::now();
        while let Some(output) = brain.poll(now) {
            match output {
                SimOutput::Event(text) => {
                    if let Err(e) = channel.send_text(&text).await {
                        return Err(format!("cannot send an event: {e}"));
                    }
                }
                SimOutput::Audio(frame) => {
                    if let Err(e) = opus.send(&frame[..], now).await {
                        debug!(call = %call.id, "{e}");
                    }
                }
                SimOutput::Close(reason) => return Ok(reason),
            }
        }
        let wake = brain.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            result = &mut call.hangup, if !hangup_gone => match result {
                Ok(()) => break "hung up".to_owned(),
                Err(_) => hangup_gone = true,
            },
            event = channel.poll() => match event {
                Some(DataChannelEvent::OnMessage(message)) => {
                    match std::str::from_utf8(&message.data) {
                        Ok(text) => brain.on_client_event(text, Instant::now()),
                        Err(_) => debug!(call = %call.id, "ignoring a binary message"),
                    }
                }
                Some(DataChannelEvent::OnClose) | None => break "the caller closed the data channel".to_owned(),
                _ => {}
            },
            Some(frame) = pcm_rx.recv() => {
                if sim.options.reply == Reply::Mirror {
                    if let Err(e) = opus.send(&frame, Instant::now()).await {
                        debug!(call = %call.id, "{e}");
                    }
                } else {
                    brain.on_audio(&frame, Instant::now());
                }
            }
            Some(track) = call.watch.tracks.recv() => {
                let tx = pcm_tx.clone();
                let mut frame = [0i16; FRAME_SAMPLES];
                let mut filled = 0usize;
                receivers.push(tokio::spawn(receive_opus(track, Default::default(), move |mut pcm: &[i16]| {
                    while !pcm.is_empty() {
                        let n = (FRAME_SAMPLES - filled).min(pcm.len());
                        frame[filled..filled + n].copy_from_slice(&pcm[..n]);
                        filled += n;
                        pcm = &pcm[n..];
                        if filled == FRAME_SAMPLES {
                            // The brain is fast; a full queue means it is gone.
                            let _ = tx.try_send(frame);
                            filled = 0;
                        }
                    }
                })));
            }
            changed = call.watch.state.changed() => {
                if changed.is_err() {
                    break "the peer connection stopped".to_owned();
                }
                let state = *call.watch.state.borrow_and_update();
                match state {
                    RTCPeerConnectionState::Connected => grace = None,
                    RTCPeerConnectionState::Disconnected => {
                        grace.get_or_insert(tokio::time::Instant::now() + DISCONNECT_GRACE);
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        break format!("connection {state}");
                    }
                    _ => {}
                }
            }
            _ = sleep_until_opt(grace) => break "the caller went away".to_owned(),
            _ = sleep_until_opt(wake) => {}
        }
    };
    for r in receivers {
        r.abort();
    }
    Ok(reason)
}

/// Waits for the caller's data channel to be open (it may already be when announced); returns
/// any messages handed over before the open event.
async fn wait_open(channel: &Arc<dyn DataChannel>) -> Result<Vec<String>, String> {
    if channel.ready_state().await.ok() == Some(RTCDataChannelState::Open) {
        return Ok(Vec::new());
    }
    let mut early = Vec::new();
    let open = async {
        loop {
            match channel.poll().await {
                Some(DataChannelEvent::OnOpen) => return Ok(std::mem::take(&mut early)),
                Some(DataChannelEvent::OnMessage(message)) => {
                    if let Ok(text) = String::from_utf8(message.data.to_vec()) {
                        early.push(text);
                    }
                }
                Some(DataChannelEvent::OnClose) | None => {
                    return Err("the data channel closed before opening".to_owned())
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, open)
        .await
        .map_err(|_| "the data channel did not open".to_owned())?
}
