//! The audio engine's boundary with the rest of the daemon.
//!
//! Audio moves in 20 ms frames of mono 16-bit PCM at 48 kHz (Opus's native rate). The microphone
//! side is a bounded channel of [`Frame`]s that the active transport drains; the speaker side is
//! a [`Speaker`] that transports push decoded PCM into. The daemon steers playback and capture
//! through [`AudioControl`]. ALSA itself runs on threads of its own, never on the async runtime.

use std::sync::Arc;

use crate::session::Earcon;

pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
pub const FRAME_MS: u32 = 20;

/// 20 ms of mono PCM at 48 kHz; passed by value so that the hot path needs no allocation.
pub type Frame = [i16; FRAME_SAMPLES];

/// Microphone frames, after echo cancellation. One transport at a time holds the lock.
pub type Microphone = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Frame>>>;

/// Where a transport puts the assistant's audio (48 kHz mono PCM, any length per call).
/// Must not block: the engine buffers, and drops with a count when full.
pub trait Speaker: Send + Sync {
    fn push(&self, pcm: &[i16]);
}

/// How the daemon steers the engine. All calls return at once.
pub trait AudioControl: Send + Sync {
    /// Drop everything queued for the speaker (barge-in, stop).
    fn flush_playback(&self);
    /// Milliseconds of assistant audio played since the last flush (for WebSocket truncation).
    fn played_ms(&self) -> u32;
    fn play_earcon(&self, earcon: Earcon);
    /// Capture is sent to the service only while a session is live.
    fn set_capture(&self, on: bool);
    fn set_volume(&self, volume: f64);
    fn set_muted(&self, muted: bool);
}

/// An engine with no sound card: silent microphone, discarding speaker. Used where audio is not
/// the subject (state and control tests) and as the shape the real engine fills in.
#[derive(Default)]
pub struct NullAudio;

impl Speaker for NullAudio {
    fn push(&self, _pcm: &[i16]) {}
}

impl AudioControl for NullAudio {
    fn flush_playback(&self) {}
    fn played_ms(&self) -> u32 {
        0
    }
    fn play_earcon(&self, _earcon: Earcon) {}
    fn set_capture(&self, _on: bool) {}
    fn set_volume(&self, _volume: f64) {}
    fn set_muted(&self, _muted: bool) {}
}

pub mod opus;
pub mod resample;
