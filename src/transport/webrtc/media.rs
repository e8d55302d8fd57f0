//! Audio on the wire: the Opus track both ends offer, 20 ms frames packed into RTP, and RTP
//! unpacked back into PCM with loss concealment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tracing::{debug, warn};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use crate::audio::opus::{OpusDecoder, OpusEncoder, OpusProfile, MAX_PACKET};
use crate::audio::{Frame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::transport::LinkStats;

/// Payload type the service uses for Opus; the answer decides, this is only our offer.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Packets lost in a row that are still worth concealing; beyond that, silence is better than
/// a long synthetic tail.
const MAX_CONCEAL: u16 = 10;
/// A pause in the microphone stream longer than this starts a new talk spurt on the wire.
const TALKSPURT_GAP: Duration = Duration::from_millis(60);
/// A pause at least this long also starts the codec afresh at both ends, so that a talk spurt
/// does not begin with the tail of the last one. Not after shorter ones: a sender scheduled
/// late, or frames relayed in bursts, must not reset an encoder whose far decoder (not ours,
/// and not reset) goes on from the old state; against aiortc, resets after every 60 ms gap
/// cut the audio it heard from 60 % of a call's frames to 25 %.
const CODEC_RESET_PAUSE: Duration = Duration::from_millis(500);
const CODEC_RESET_SAMPLES: u32 = (CODEC_RESET_PAUSE.as_millis() as u32) * SAMPLE_RATE / 1000;
/// Bytes of payload buffer reserved at a time; packets share it until all are sent.
const PAYLOAD_ARENA: usize = 16 * 1024;

/// Opus as both ends of a call offer it: 48 kHz, two channels in SDP (as RFC 7587 requires,
/// whatever is actually sent), in-band FEC.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A local Opus track with a fresh SSRC.
pub fn opus_track(name: &str) -> (Arc<TrackLocalStaticRTP>, u32) {
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
pub async fn negotiated_opus(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    let params = sender.get_parameters().await.ok()?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
        .map(|c| c.payload_type)
}

/// The `maxaveragebitrate` an SDP puts on its Opus payload (RFC 7587): the most the far end
/// wants to receive. `None` where it sets none, or says nothing readable.
pub fn opus_max_average_bitrate(sdp: &str) -> Option<u32> {
    let attribute = |line: &str, name: &str| {
        let rest = line.trim().strip_prefix("a=")?.strip_prefix(name)?;
        let (pt, value) = rest.split_once(' ')?;
        Some((pt.to_owned(), value.trim().to_owned()))
    };
    let opus: Vec<String> = sdp
        .lines()
        .filter_map(|l| attribute(l, "rtpmap:"))
        .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("opus/"))
        .map(|(pt, _)| pt)
        .collect();
    sdp.lines()
        .filter_map(|l| attribute(l, "fmtp:"))
        .filter(|(pt, _)| opus.contains(pt))
        .find_map(|(_, params)| {
            params.split(';').find_map(|param| {
                let (key, value) = param.split_once('=')?;
                if key.trim().eq_ignore_ascii_case("maxaveragebitrate") {
                    value.trim().parse().ok()
                } else {
                    None
                }
            })
        })
}

/// Packs the microphone's frames (20 or 10 ms) into Opus RTP packets on a local track.
pub struct OpusSender {
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
    pub fn new(
        track: Arc<TrackLocalStaticRTP>,
        ssrc: u32,
        payload_type: u8,
        profile: OpusProfile,
    ) -> Result<Self, String> {
        Ok(OpusSender {
            track,
            ssrc,
            payload_type,
            sequence: rand::random(),
            timestamp: rand::random(),
            last_sent: None,
            encoder: OpusEncoder::with_profile(profile).map_err(|e| e.to_string())?,
            packet: [0; MAX_PACKET],
            arena: BytesMut::with_capacity(PAYLOAD_ARENA),
        })
    }

    pub fn profile(&self) -> OpusProfile {
        self.encoder.profile()
    }

    /// Codes the frames from now on as `profile`. A fresh encoder (libopus fixes the
    /// application once a frame is coded): the far decoder follows, as every packet says how
    /// it was coded.
    pub fn set_profile(&mut self, profile: OpusProfile) -> Result<(), String> {
        self.encoder = OpusEncoder::with_profile(profile).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Encodes and sends one frame (10 or 20 ms) captured at `now`.
    pub async fn send(&mut self, frame: &[i16], now: Instant) -> Result<(), String> {
        let (timestamp, marker) = next_timestamp(self.timestamp, self.last_sent, now, frame.len());
        let paused = self
            .last_sent
            .is_some_and(|last| now.saturating_duration_since(last) >= CODEC_RESET_PAUSE);
        if paused {
            // After a pause: no tail of what came before it.
            self.encoder.reset().map_err(|e| e.to_string())?;
        }
        let n = self
            .encoder
            .encode(frame, &mut self.packet)
            .map_err(|e| e.to_string())?;
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
        self.timestamp = timestamp.wrapping_add(frame.len() as u32);
        self.track
            .write_rtp(packet)
            .await
            .map_err(|e| format!("cannot send audio: {e}"))
    }
}

/// The RTP timestamp of the frame captured at `now`, and whether it starts a talk spurt: after
/// a pause in capture the clock has run on, so the timestamp jumps by the time that passed
/// (receivers' jitter buffers depend on it) and the marker bit is set.
fn next_timestamp(
    next: u32,
    last_sent: Option<Instant>,
    now: Instant,
    frame_samples: usize,
) -> (u32, bool) {
    match last_sent {
        None => (next, true),
        Some(last) => {
            let gap = now.saturating_duration_since(last);
            if gap > TALKSPURT_GAP {
                // Frames that would have been sent during the pause, this one excluded.
                let frame_ms = (frame_samples as u128 * 1000 / u128::from(SAMPLE_RATE)).max(1);
                let skipped = (gap.as_millis() / frame_ms).saturating_sub(1) as u32;
                (
                    next.wrapping_add(skipped.wrapping_mul(frame_samples as u32)),
                    true,
                )
            } else {
                (next, false)
            }
        }
    }
}

/// Turns a stream of Opus RTP payloads back into PCM, concealing lost packets (from the next
/// packet's FEC data where it can) and dropping late or repeated ones.
pub struct OpusReceiver {
    decoder: OpusDecoder,
    /// The last packet's sequence number and timestamp.
    last: Option<(u16, u32)>,
    /// Samples the last packet decoded to (the RTP clock of Opus is 48 kHz, as ours).
    last_samples: u32,
    out: [i16; FRAME_SAMPLES * 6],
    hole: Frame,
    pub concealed: u64,
    pub late: u64,
    /// Packets that never arrived (concealed or not).
    pub lost: u64,
}

impl OpusReceiver {
    pub fn new() -> Result<Self, String> {
        Ok(OpusReceiver {
            decoder: OpusDecoder::new().map_err(|e| e.to_string())?,
            last: None,
            last_samples: FRAME_SAMPLES as u32,
            out: [0; FRAME_SAMPLES * 6],
            hole: [0; FRAME_SAMPLES],
            concealed: 0,
            late: 0,
            lost: 0,
        })
    }

    /// Feeds one RTP packet; `sink` receives the PCM (48 kHz mono) it yields, in order. A
    /// packet after a pause of [`CODEC_RESET_PAUSE`] or more (its timestamp ran on that much
    /// further than the packets in between account for) is decoded afresh: the decoder would
    /// otherwise begin it with the tail of the last talk spurt. The marker bit is not trusted
    /// for this: aiortc sets it on every packet.
    pub fn on_packet(
        &mut self,
        header: &rtp::header::Header,
        payload: &[u8],
        sink: &mut dyn FnMut(&[i16]),
    ) {
        let (sequence, timestamp) = (header.sequence_number, header.timestamp);
        if let Some((last_sequence, last_timestamp)) = self.last {
            let ahead = sequence.wrapping_sub(last_sequence);
            if ahead == 0 || ahead >= 0x8000 {
                // A repeat, or a packet whose slot was already concealed.
                self.late += 1;
                return;
            }
            let accounted = u32::from(ahead).saturating_mul(self.last_samples);
            let ran = timestamp.wrapping_sub(last_timestamp);
            // The pause the timestamps show: what they ran on beyond the packets, plus a frame.
            let pause = ran.saturating_sub(accounted) + self.last_samples;
            if ran < 0x8000_0000 && pause >= CODEC_RESET_SAMPLES {
                if let Err(e) = self.decoder.reset() {
                    debug!("{e}");
                }
            }
            let missing = ahead - 1;
            self.lost += u64::from(missing);
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
        self.last = Some((sequence, timestamp));
        if payload.is_empty() {
            return;
        }
        match self.decoder.decode(payload, &mut self.out) {
            Ok(n) => {
                self.last_samples = (n as u32).max(1);
                sink(&self.out[..n]);
            }
            Err(e) => debug!("dropping an undecodable audio packet: {e}"),
        }
    }
}

/// Decodes a remote Opus track into `sink` until the track ends; lost packets are added to
/// `stats` as they are found.
pub async fn receive_opus(
    track: Arc<dyn TrackRemote>,
    stats: Arc<LinkStats>,
    mut sink: impl FnMut(&[i16]) + Send,
) {
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
                let lost = receiver.lost;
                receiver.on_packet(&packet.header, &packet.payload, &mut sink);
                if receiver.lost != lost {
                    stats.add_packets_lost(receiver.lost - lost);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn timestamps_run_on_through_pauses() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(next_timestamp(1000, None, t0, 960), (1000, true));
        assert_eq!(next_timestamp(1960, Some(t0), at(20), 960), (1960, false));
        // One second of silence: 49 frames were never sent before this one.
        let (ts, marker) = next_timestamp(1960, Some(t0), at(1000), 960);
        assert_eq!((ts, marker), (1960 + 49 * 960, true));
        // With 10 ms frames, 99 of them; either way the clock ran on by the pause.
        assert_eq!(next_timestamp(1480, Some(t0), at(10), 480), (1480, false));
        let (ts, marker) = next_timestamp(1480, Some(t0), at(1000), 480);
        assert_eq!((ts, marker), (1480 + 99 * 480, true));
    }

    #[test]
    fn the_answers_opus_bitrate_cap_is_read() {
        let answer = |fmtp: &str| {
            format!(
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n\
                 a=rtpmap:0 PCMU/8000\r\na=fmtp:0 maxaveragebitrate=1\r\n{fmtp}\
                 m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
            )
        };
        assert_eq!(
            opus_max_average_bitrate(&answer(
                "a=fmtp:111 minptime=10; maxaveragebitrate=40000;useinbandfec=1\r\n"
            )),
            Some(40_000)
        );
        // Another payload's cap is not Opus's; none, or a garbled one, is no cap.
        assert_eq!(
            opus_max_average_bitrate(&answer("a=fmtp:111 minptime=10;useinbandfec=1\r\n")),
            None
        );
        assert_eq!(
            opus_max_average_bitrate(&answer("a=fmtp:111 maxaveragebitrate=lots\r\n")),
            None
        );
        assert_eq!(opus_max_average_bitrate(""), None);
    }

    fn encoded_tone(frames: usize) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::with_profile(OpusProfile::SERVICE).expect("encoder");
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
        let mut rx = OpusReceiver::new().expect("receiver");
        let lost_before = rx.lost;
        let mut samples = 0usize;
        let mut sink = |pcm: &[i16]| samples += pcm.len();
        // Sequence numbers wrap around 65535 on purpose.
        let base = 65_530u16;
        let header = |i: usize| rtp::header::Header {
            sequence_number: base.wrapping_add(i as u16),
            timestamp: (i * FRAME_SAMPLES) as u32,
            ..Default::default()
        };
        for (i, p) in packets.iter().enumerate() {
            if i == 5 || i == 6 || i == 12 {
                continue; // lost
            }
            rx.on_packet(&header(i), p, &mut sink);
        }
        // A late copy of an already concealed packet, and a duplicate.
        rx.on_packet(&header(5), &packets[5], &mut sink);
        rx.on_packet(&header(19), &packets[19], &mut sink);
        assert_eq!(rx.concealed, 3);
        assert_eq!(rx.late, 2);
        // Other tests may add to the process-wide count meanwhile, never take from it.
        assert!(rx.lost - lost_before >= 3, "losses reach the D-Bus counter");
        assert_eq!(
            samples,
            20 * FRAME_SAMPLES,
            "every 20 ms slot is filled exactly once"
        );
    }

    /// A tone, then a packet of silence from a fresh encoder with the given RTP header fields:
    /// how loud that packet decodes.
    fn first_frame_after(timestamp_jump: u32, marker: bool) -> f64 {
        let mut rx = OpusReceiver::new().expect("receiver");
        let mut header = rtp::header::Header::default();
        for (i, p) in encoded_tone(40).iter().enumerate() {
            header.sequence_number = i as u16;
            header.timestamp = i as u32 * FRAME_SAMPLES as u32;
            rx.on_packet(&header, p, &mut |_| {});
        }
        let mut enc = OpusEncoder::with_profile(OpusProfile::SERVICE).expect("encoder");
        let mut packet = [0u8; MAX_PACKET];
        let n = enc
            .encode(&[0; FRAME_SAMPLES], &mut packet)
            .expect("encode");
        header.sequence_number = 40;
        header.timestamp += FRAME_SAMPLES as u32 + timestamp_jump;
        header.marker = marker;
        let mut energy = 0.0;
        rx.on_packet(&header, &packet[..n], &mut |pcm: &[i16]| {
            energy = crate::audio::signals::rms(pcm);
        });
        energy
    }

    #[test]
    fn a_talk_spurt_after_a_pause_is_decoded_afresh() {
        // Straight on: the decoder's tail of the tone is heard (it belongs there).
        assert!(first_frame_after(0, false) > 300.0);
        // After a second's pause, told by the timestamp: silence.
        assert!(first_frame_after(48_000, false) < 10.0);
        // A 100 ms gap is a late sender, not a pause: decoded straight on, as its encoder was.
        assert!(first_frame_after(4_800, false) > 300.0);
        // A marker bit alone says nothing (aiortc sets it on every packet): decoded straight on.
        assert!(first_frame_after(0, true) > 300.0);
    }
}
