//! A call in progress: events both ways over the data channel, the microphone onto the send
//! track, the service's track into the speaker, and the connection's health.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::RTCPeerConnectionState;

use super::call::Call;
use super::media::*;
use super::peer::ICE_DISCONNECTED;
use super::peer::*;
use super::uplink::{FarEndReports, Switch, UplinkCodec, SAMPLES_PER_READING};
use crate::audio::latency::LatencyMeter;
use crate::audio::Microphone;
use crate::logging::{held_back, Throttle};
use crate::session::{ClientEvent, ServerEvent};
use crate::transport::activity::{AudioActivity, CHECK_EVERY};
use crate::transport::dialect::{Decoded, Dialect};
use crate::transport::{LinkEvent, LinkStats};

/// How long ICE may stay `disconnected` before the link is declared lost. ICE itself calls a
/// pair disconnected after a second without a packet (see `peer.rs`), and a call carries
/// packets every 20 ms both ways: together a dead service is noticed within about 2.5 s, a
/// short Wi-Fi hiccup is still ridden out.
const DISCONNECT_GRACE: Duration = Duration::from_millis(1500);

/// How long a goodbye on the data channel may take before the call is closed anyway.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(300);

/// Sends the API's goodbye and waits, briefly, for the service to confirm the end: closing
/// the connection at once could drop the goodbye still queued in SCTP.
async fn say_goodbye(link: &RunLink, goodbye: &str) {
    let confirmed = async {
        link.channel.send_text(goodbye).await.ok()?;
        loop {
            if let DataChannelEvent::OnMessage(message) = link.channel.poll().await? {
                let text = std::str::from_utf8(&message.data).ok()?;
                if let Decoded::Event(ServerEvent::SessionClosed { .. }) = link.dialect.decode(text)
                {
                    return Some(());
                }
            }
        }
    };
    if tokio::time::timeout(GOODBYE_TIMEOUT, confirmed)
        .await
        .is_err()
    {
        debug!("the service did not confirm the end of the session in time");
    }
}

/// Sends one client event. `Err` ends the link: with a reason when sending failed for good,
/// without one when the daemon is gone.
async fn send_event(link: &RunLink, event: &ClientEvent) -> Result<(), Option<String>> {
    for text in link.dialect.encode(event) {
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
                    about: None,
                };
                if link.events.send(LinkEvent::Server(error)).await.is_err() {
                    return Err(None);
                }
            }
            Err(e) => return Err(Some(format!("cannot send on the data channel: {e}"))),
        }
    }
    Ok(())
}

/// Microphone to Opus track, for as long as the link lives (the task is aborted at the end,
/// which releases the microphone). Every few seconds the far end's reports on the stream are
/// read, and the profile follows the loss they show.
pub(super) async fn pump_microphone(
    microphone: Microphone,
    mut sender: OpusSender,
    reports: Arc<FarEndReports>,
    latency: Arc<LatencyMeter>,
    stats: Arc<LinkStats>,
) {
    let mut frames = microphone.lock_owned().await;
    let mut failures: u64 = 0;
    let mut uplink = Uplink {
        codec: UplinkCodec::new(sender.profile()),
        reports,
        stats,
    };
    let mut until_reading = SAMPLES_PER_READING;
    while let Some(frame) = frames.recv().await {
        match sender.send(frame.samples(), Instant::now()).await {
            Ok(()) => latency.frame_sent(frame.heard_at),
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!("{e} ({failures} frames lost)");
                }
            }
        }
        until_reading = until_reading.saturating_sub(frame.len);
        if until_reading == 0 {
            until_reading = SAMPLES_PER_READING;
            uplink.follow_reported_loss(&mut sender);
        }
    }
}

/// What the microphone task keeps of the far end's reports on its stream.
struct Uplink {
    codec: UplinkCodec,
    reports: Arc<FarEndReports>,
    stats: Arc<LinkStats>,
}

impl Uplink {
    /// Reads the far end's latest report on the microphone's stream: the packets lost go to
    /// `Stats`, and the encoder's profile switches where the loss calls for it (see `uplink`).
    fn follow_reported_loss(&mut self, sender: &mut OpusSender) {
        let Some(counts) = self.reports.counts() else {
            return;
        };
        debug!(
            "far-end report: {} of the microphone's packets lost, highest sequence {}",
            counts.lost, counts.highest_sequence
        );
        // The same reading for `Stats` and for the codec.
        self.stats
            .add_uplink_packets_lost(self.reports.count_lost(counts));
        let Some(switch) = self
            .codec
            .on_counts(sender.profile(), counts, Instant::now())
        else {
            return;
        };
        switch_profile(sender, switch);
    }
}

fn switch_profile(sender: &mut OpusSender, switch: Switch) {
    match sender.set_profile(switch.profile) {
        Ok(()) => info!(
            "the service reports {:.1} % of the microphone's packets lost lately: sending Opus {}",
            switch.loss_percent, switch.profile
        ),
        Err(e) => warn!(
            "cannot switch the microphone's Opus to {}: {e} (staying with {})",
            switch.profile,
            sender.profile()
        ),
    }
}

pub(super) struct RunLink {
    pub(super) dialect: Arc<dyn Dialect>,
    pub(super) channel: Arc<dyn DataChannel>,
    /// Messages that arrived before the channel reported open.
    pub(super) early: Vec<String>,
    pub(super) watch: PeerWatch,
    pub(super) commands: mpsc::Receiver<ClientEvent>,
    pub(super) events: mpsc::Sender<LinkEvent>,
    pub(super) microphone: tokio::task::JoinHandle<()>,
    pub(super) speaker: Arc<dyn crate::audio::Speaker>,
    pub(super) stats: Arc<LinkStats>,
}

/// The link's life: events both ways, the remote track into the speaker, and the health of the
/// connection. Returns when the link ends, after hanging up.
pub(super) async fn run_link(call: Call, mut link: RunLink) {
    let mut receivers = Vec::new();
    let mut grace: Option<tokio::time::Instant> = None;
    for text in std::mem::take(&mut link.early) {
        if let Decoded::Event(event) = link.dialect.decode(&text) {
            let _ = link.events.send(LinkEvent::Server(event)).await;
        }
    }
    // RTP arrives at the pace it plays: a queue that outlasts the network's needs is delay.
    link.speaker.set_paced(true);
    let mut bad_input = Throttle::peer_input();
    let tells_playout = link.dialect.reports_playout();
    let activity = Arc::new(AudioActivity::default());
    let mut activity_check = tokio::time::interval(CHECK_EVERY);
    let reason: Option<String> = loop {
        tokio::select! {
            command = link.commands.recv() => match command {
                Some(event) => {
                    if let Err(reason) = send_event(&link, &event).await {
                        break reason;
                    }
                }
                None => {
                    // The daemon let go: say goodbye if the API wants one, never waiting long.
                    if let Some(goodbye) = link.dialect.closing() {
                        say_goodbye(&link, &goodbye).await;
                    }
                    break None;
                }
            },
            _ = activity_check.tick(), if !tells_playout => {
                if activity.quiet(Instant::now()) {
                    let stopped = ServerEvent::AudioStopped { interrupted: false };
                    if link.events.send(LinkEvent::Server(stopped)).await.is_err() {
                        break None;
                    }
                }
            }
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
                        Decoded::Malformed(why) => {
                            if let Some(held) = bad_input.admit(std::time::Instant::now()) {
                                warn!("malformed event from the service: {why:?}{}", held_back(held));
                            }
                        }
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
                let stats = link.stats.clone();
                let activity = activity.clone();
                let events = link.events.clone();
                receivers.push(tokio::spawn(receive_opus(track, stats, move |pcm| {
                    speaker.push(pcm);
                    // No start event from the API: the first loud frame is the start. A full
                    // queue drops it; the next loud turn is reported anyway.
                    if !tells_playout && activity.heard(pcm, Instant::now()) {
                        let started = ServerEvent::AudioStarted { item_id: None };
                        let _ = events.try_send(LinkEvent::Server(started));
                    }
                })));
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
                    "no media path to the service for {:.1} s",
                    (ICE_DISCONNECTED + DISCONNECT_GRACE).as_secs_f64()
                ));
            }
        }
    };
    link.microphone.abort();
    // Reports that came after the microphone's last reading (up to 2.5 s of them).
    link.stats
        .add_uplink_packets_lost(link.watch.reports.take_newly_lost());
    if bad_input.held() > 0 {
        warn!(
            "{} more warnings about what the service sent were held back",
            bad_input.held()
        );
    }
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
