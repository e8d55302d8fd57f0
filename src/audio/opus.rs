//! Opus for the WebRTC audio track: 20 ms frames of 48 kHz mono, VOIP mode, in-band FEC, and a
//! decoder that conceals lost packets. Both sides reuse caller buffers: nothing is allocated
//! per frame.

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

pub struct OpusEncoder {
    inner: Encoder,
}

impl OpusEncoder {
    /// VOIP mode, 32 kbit/s, in-band FEC tuned for a few percent loss.
    pub fn new() -> Result<Self, OpusError> {
        let mut inner = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)
            .map_err(|e| err("cannot create encoder", e))?;
        inner
            .set_bitrate(Bitrate::BitsPerSecond(32_000))
            .map_err(|e| err("bitrate", e))?;
        inner
            .set_inband_fec(true)
            .map_err(|e| err("in-band FEC", e))?;
        inner
            .set_packet_loss_perc(5)
            .map_err(|e| err("packet loss", e))?;
        // Speech is coded by SILK, whose analysis at libopus's default complexity (9) made Opus
        // the largest single cost of a call (BENCHMARKS.md, "A two-way call"); 5 is what
        // WebRTC uses on ARM phones.
        inner
            .set_complexity(COMPLEXITY)
            .map_err(|e| err("complexity", e))?;
        Ok(OpusEncoder { inner })
    }

    /// Encodes one 20 ms frame into `out`; returns the packet length.
    pub fn encode(
        &mut self,
        frame: &Frame,
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
        let mut enc = OpusEncoder::new().expect("encoder");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut packet = [0u8; MAX_PACKET];
        let mut out = [0i16; FRAME_SAMPLES * 6];
        let input = tone(440.0, 50);
        let mut decoded = Vec::new();
        for (i, frame) in input.iter().enumerate() {
            let n = enc.encode(frame, &mut packet).expect("encode");
            assert!(n > 0 && n < 400, "packet of {n} bytes");
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
}
