//! Opus for the WebRTC audio track: 20 ms (or 10 ms) frames of 48 kHz mono, coded as
//! [`OpusProfile`] says, and a decoder that conceals lost packets. Both sides reuse caller
//! buffers: nothing is allocated per frame.

use audiopus::coder::{Decoder, Encoder, GenericCtl};
use audiopus::{Application, Bitrate, Channels, SampleRate};

use super::{Frame, FRAME_SAMPLES};

/// Largest Opus packet we produce; RFC 6716 allows 1275 bytes per frame.
pub const MAX_PACKET: usize = 1275;

#[derive(Debug, thiserror::Error)]
#[error("opus: {0}")]
pub struct OpusError(String);

fn err(context: &str, e: audiopus::Error) -> OpusError {
    OpusError(format!("{context}: {e}"))
}

/// The encoder's complexity (0–10).
pub const COMPLEXITY: u8 = 5;

/// How a stream is coded. Every Opus decoder takes both; they differ in what encoding costs and
/// in the bits it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpusProfile {
    /// VOIP mode (SILK or hybrid for speech), in-band FEC: what libwebrtc sends, and so what
    /// the simulator sends in the service's place.
    Voip { bitrate: u32 },
    /// CELT alone (restricted low delay), no FEC and no loss hint (which made CELT score
    /// lower). At 80 kbit/s speech scores higher than `Voip` at 32 kbit/s without losses and
    /// with 2 % lost (at 5 %, on three samples of five), for 40 % of the encoder's time:
    /// SILK's analysis was the dearest part of a call's Opus (BENCHMARKS.md, "Opus without
    /// SILK").
    Celt { bitrate: u32 },
}

const VOIP_BITRATE: u32 = 32_000;
const CELT_BITRATE: u32 = 80_000;

impl OpusProfile {
    /// The service's side of a call: 32 kbit/s, as libwebrtc sends speech.
    pub const SERVICE: OpusProfile = OpusProfile::Voip {
        bitrate: VOIP_BITRATE,
    };
    /// The device's side: CELT at the rate where it matches `SERVICE`'s quality.
    pub const DEVICE: OpusProfile = OpusProfile::Celt {
        bitrate: CELT_BITRATE,
    };

    /// The device's profile within what the far end takes (`maxaveragebitrate` in its SDP,
    /// RFC 7587): CELT where it fits, VOIP (whose quality needs far fewer bits) where not.
    pub fn device_within(max_average_bitrate: Option<u32>) -> OpusProfile {
        match max_average_bitrate {
            Some(cap) if cap < CELT_BITRATE => OpusProfile::Voip {
                // 6 kbit/s is the least Opus codes (RFC 7587).
                bitrate: cap.clamp(6_000, VOIP_BITRATE),
            },
            _ => Self::DEVICE,
        }
    }
}

impl std::fmt::Display for OpusProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpusProfile::Voip { bitrate } => {
                write!(f, "VOIP with FEC at {} kbit/s", bitrate / 1000)
            }
            OpusProfile::Celt { bitrate } => write!(f, "CELT at {} kbit/s", bitrate / 1000),
        }
    }
}

pub struct OpusEncoder {
    inner: Encoder,
    profile: OpusProfile,
}

impl OpusEncoder {
    /// The device's encoder ([`OpusProfile::DEVICE`]).
    pub fn new() -> Result<Self, OpusError> {
        Self::with_profile(OpusProfile::DEVICE)
    }

    pub fn with_profile(profile: OpusProfile) -> Result<Self, OpusError> {
        let (application, bitrate) = match profile {
            OpusProfile::Voip { bitrate } => (Application::Voip, bitrate),
            OpusProfile::Celt { bitrate } => (Application::LowDelay, bitrate),
        };
        let mut inner = Encoder::new(SampleRate::Hz48000, Channels::Mono, application)
            .map_err(|e| err("cannot create encoder", e))?;
        inner
            .set_bitrate(Bitrate::BitsPerSecond(bitrate as i32))
            .map_err(|e| err("bitrate", e))?;
        if let OpusProfile::Voip { .. } = profile {
            // FEC is SILK's; CELT has none to turn on.
            inner
                .set_inband_fec(true)
                .map_err(|e| err("in-band FEC", e))?;
            inner
                .set_packet_loss_perc(5)
                .map_err(|e| err("packet loss", e))?;
        }
        // At libopus's default complexity (9) SILK's analysis made Opus the largest single
        // cost of a call (BENCHMARKS.md, "A two-way call"); 5 is what WebRTC uses on ARM
        // phones, and what CELT's scores were measured at.
        inner
            .set_complexity(COMPLEXITY)
            .map_err(|e| err("complexity", e))?;
        Ok(OpusEncoder { inner, profile })
    }

    pub fn profile(&self) -> OpusProfile {
        self.profile
    }

    /// Encodes one frame (10 or 20 ms) into `out`; returns the packet length.
    pub fn encode(
        &mut self,
        frame: &[i16],
        out: &mut [u8; MAX_PACKET],
    ) -> Result<usize, OpusError> {
        self.inner.encode(frame, out).map_err(|e| err("encode", e))
    }

    /// Forgets the audio before a pause (the settings stay): the first frame after it would
    /// otherwise carry the tail of what was said before, a blip at the start of the next
    /// talk spurt.
    pub fn reset(&mut self) -> Result<(), OpusError> {
        self.inner.reset_state().map_err(|e| err("reset", e))
    }
}

pub struct OpusDecoder {
    inner: Decoder,
}

impl OpusDecoder {
    /// Decodes any Opus stream (the service sends `opus/48000/2`) down to mono.
    pub fn new() -> Result<Self, OpusError> {
        let inner = Decoder::new(SampleRate::Hz48000, Channels::Mono)
            .map_err(|e| err("cannot create decoder", e))?;
        Ok(OpusDecoder { inner })
    }

    /// Decodes a packet into `out` (room for 120 ms); returns the samples written.
    pub fn decode(
        &mut self,
        packet: &[u8],
        out: &mut [i16; FRAME_SAMPLES * 6],
    ) -> Result<usize, OpusError> {
        self.inner
            .decode(Some(packet), &mut out[..], false)
            .map_err(|e| err("decode", e))
    }

    /// Forgets the audio before a pause, for the same reason as [`OpusEncoder::reset`].
    pub fn reset(&mut self) -> Result<(), OpusError> {
        self.inner.reset_state().map_err(|e| err("reset", e))
    }

    /// Fills one frame for a packet that never came: from the next packet's FEC data when it
    /// is at hand, by concealment otherwise.
    pub fn conceal(&mut self, next: Option<&[u8]>, out: &mut Frame) -> Result<usize, OpusError> {
        let fec = next.is_some();
        self.inner
            .decode(next, &mut out[..], fec)
            .map_err(|e| err("conceal", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::signals::rms;

    fn tone(freq: f64, frames: usize) -> Vec<Frame> {
        (0..frames)
            .map(|f| {
                let mut frame = [0i16; FRAME_SAMPLES];
                for (i, s) in frame.iter_mut().enumerate() {
                    let t = (f * FRAME_SAMPLES + i) as f64 / 48_000.0;
                    *s = (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
                }
                frame
            })
            .collect()
    }

    /// A tone, then silence after a pause: how loud the first frame after the pause decodes.
    fn after_a_pause(reset: bool) -> f64 {
        let mut enc = OpusEncoder::new().expect("encoder");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut packet = [0u8; MAX_PACKET];
        let mut out = [0i16; FRAME_SAMPLES * 6];
        for frame in tone(440.0, 40) {
            let n = enc.encode(&frame, &mut packet).expect("encode");
            dec.decode(&packet[..n], &mut out).expect("decode");
        }
        if reset {
            enc.reset().expect("reset");
            dec.reset().expect("reset");
        }
        let n = enc
            .encode(&[0; FRAME_SAMPLES], &mut packet)
            .expect("encode");
        let m = dec.decode(&packet[..n], &mut out).expect("decode");
        rms(&out[..m])
    }

    #[test]
    fn a_talk_spurt_does_not_start_with_the_tail_of_the_last_one() {
        // Measured: the tail reads about 3,000 RMS without the resets, 0 with them.
        assert!(after_a_pause(false) > 500.0);
        assert!(after_a_pause(true) < 10.0, "{}", after_a_pause(true));
    }

    #[test]
    fn round_trip_keeps_a_tone_and_conceals_a_loss() {
        for profile in [OpusProfile::DEVICE, OpusProfile::SERVICE] {
            round_trip(profile);
        }
    }

    fn round_trip(profile: OpusProfile) {
        let mut enc = OpusEncoder::with_profile(profile).expect("encoder");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut packet = [0u8; MAX_PACKET];
        let mut out = [0i16; FRAME_SAMPLES * 6];
        let input = tone(440.0, 50);
        let mut decoded = Vec::new();
        let mut bytes = 0;
        for (i, frame) in input.iter().enumerate() {
            let n = enc.encode(frame, &mut packet).expect("encode");
            assert!(n > 0, "{profile}: an empty packet");
            bytes += n;
            if i == 30 {
                let mut hole = [0i16; FRAME_SAMPLES];
                let got = dec.conceal(None, &mut hole).expect("conceal");
                assert_eq!(got, FRAME_SAMPLES);
                decoded.extend_from_slice(&hole);
                continue;
            }
            let got = dec.decode(&packet[..n], &mut out).expect("decode");
            assert_eq!(got, FRAME_SAMPLES);
            decoded.extend_from_slice(&out[..got]);
        }
        // The bitrate asked for, on average (variable, so a packet may be far from it).
        let (OpusProfile::Voip { bitrate } | OpusProfile::Celt { bitrate }) = profile;
        let kbits = (bytes * 8 * 50 / input.len()) as u32 / 1000;
        assert!(
            kbits * 1000 <= bitrate * 5 / 4 && kbits * 1000 >= bitrate / 2,
            "{profile}: {kbits} kbit/s"
        );
        // Past the codec's start-up, the decoded tone has the input's energy within 3 dB.
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let flat: Vec<i16> = input.concat();
        let (a, b) = (rms(&flat[9600..24000]), rms(&decoded[9600..24000]));
        assert!(
            (20.0 * (b / a).log10()).abs() < 3.0,
            "rms in {a:.0}, out {b:.0}"
        );
    }

    /// The TOC byte's configuration (RFC 6716, 3.1): 0–11 SILK, 12–15 hybrid, 16–31 CELT.
    fn modes(profile: OpusProfile) -> (usize, usize) {
        let mut enc = OpusEncoder::with_profile(profile).expect("encoder");
        let mut packet = [0u8; MAX_PACKET];
        let speech = crate::audio::signals::speech_like(48_000 * 2, 3, false);
        let mut celt = 0;
        let mut frames = 0;
        for chunk in speech.chunks_exact(FRAME_SAMPLES) {
            let frame: Frame = chunk.try_into().expect("frame");
            let n = enc.encode(&frame, &mut packet).expect("encode");
            assert!(n > 0);
            celt += usize::from(packet[0] >> 3 >= 16);
            frames += 1;
        }
        (celt, frames)
    }

    #[test]
    fn the_device_codes_celt_alone_and_the_service_does_not() {
        let (celt, frames) = modes(OpusProfile::DEVICE);
        assert_eq!(celt, frames, "the device's frames are all CELT");
        let (celt, frames) = modes(OpusProfile::SERVICE);
        assert!(
            celt < frames / 10,
            "{celt} of {frames} VOIP frames were CELT"
        );
    }

    #[test]
    fn a_far_end_that_caps_the_bitrate_gets_voip_within_it() {
        assert_eq!(OpusProfile::device_within(None), OpusProfile::DEVICE);
        assert_eq!(
            OpusProfile::device_within(Some(510_000)),
            OpusProfile::DEVICE
        );
        assert_eq!(
            OpusProfile::device_within(Some(64_000)),
            OpusProfile::Voip { bitrate: 32_000 }
        );
        assert_eq!(
            OpusProfile::device_within(Some(20_000)),
            OpusProfile::Voip { bitrate: 20_000 }
        );
        assert_eq!(
            OpusProfile::device_within(Some(100)),
            OpusProfile::Voip { bitrate: 6_000 }
        );
    }
}
