//! The audio engine's boundary with the rest of the daemon.
//!
//! Audio moves in 20 ms frames of mono 16-bit PCM at 48 kHz (Opus's native rate); the microphone
//! may send 10 ms frames instead (`audio.frame_ms`). The microphone side is a bounded channel
//! of [`MicFrame`]s that the active transport drains; the speaker side is
//! a [`Speaker`] that transports push decoded PCM into. The daemon steers playback and capture
//! through [`AudioControl`]. ALSA itself runs on threads of its own, never on the async runtime.

use std::sync::Arc;

use crate::session::Earcon;

pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
pub const FRAME_MS: u32 = 20;

/// How long `samples` at [`SAMPLE_RATE`] play.
pub fn duration_of(samples: u64) -> std::time::Duration {
    std::time::Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE))
}

/// 20 ms of mono PCM at 48 kHz; passed by value so that the hot path needs no allocation.
pub type Frame = [i16; FRAME_SAMPLES];

/// A microphone frame on its way to the wire: 20 ms, or 10 ms (`audio.frame_ms`) in the
/// first half of `pcm`.
#[derive(Debug, Clone, Copy)]
pub struct MicFrame {
    pub pcm: Frame,
    /// Samples of `pcm` that hold audio: [`FRAME_SAMPLES`], or half of it.
    pub len: usize,
    /// When its first sample reached the microphone (the device's own delay included): where
    /// the daemon's share of the call's delay starts ([`latency::LatencyMeter::frame_sent`]).
    pub heard_at: std::time::Instant,
}

impl MicFrame {
    /// A frame whose sound is just in (tests, stand-in microphones).
    pub fn heard_now(pcm: Frame) -> Self {
        MicFrame {
            pcm,
            len: FRAME_SAMPLES,
            heard_at: std::time::Instant::now(),
        }
    }

    /// The frame's audio.
    pub fn samples(&self) -> &[i16] {
        &self.pcm[..self.len.min(FRAME_SAMPLES)]
    }
}

/// Microphone frames, after echo cancellation. One transport at a time holds the lock.
pub type Microphone = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<MicFrame>>>;

/// Where a transport puts the assistant's audio (48 kHz mono PCM, any length per call).
/// Must not block: the engine buffers, and drops with a count when full.
pub trait Speaker: Send + Sync {
    fn push(&self, pcm: &[i16]);
    /// The next sample pushed starts a new assistant item, so that [`AudioControl::item_heard`]
    /// can say how much of that item the user heard.
    fn item_boundary(&self) {}
    /// Whether what is pushed from now on arrives at the pace it plays (WebRTC) rather than
    /// ahead of it (WebSocket): playback may then cut a queue that stays longer than the
    /// network needs (see `jitter.rs`).
    fn set_paced(&self, _paced: bool) {}
}

/// How much of the assistant item now playing was heard, and how much of it arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemHeard {
    pub heard_ms: u32,
    pub delivered_ms: u32,
}

/// How the daemon steers the engine. All calls return at once.
pub trait AudioControl: Send + Sync {
    /// Drop everything queued for the speaker (barge-in, stop).
    fn flush_playback(&self);
    /// The current item's audio that was played (written to the device and no longer queued
    /// in it), never more than what arrived of it: for WebSocket truncation. Read it before a
    /// flush, which starts the count again.
    fn item_heard(&self) -> ItemHeard;
    fn play_earcon(&self, earcon: Earcon);
    /// Capture is sent to the service only while a session is live.
    fn set_capture(&self, on: bool);
    fn set_volume(&self, volume: f64);
    fn set_muted(&self, muted: bool);
    /// Counters and health, for the status surfaces and the logs.
    fn stats(&self) -> AudioStats {
        AudioStats::default()
    }
    /// Plays the self-check's test tone at the current volume (mixed over whatever plays);
    /// returns its length in ms, or why it cannot.
    fn test_speaker(&self) -> Result<u32, String> {
        Err("there is no audio engine".into())
    }
    /// Plays the echo check's chirp and records the microphone meanwhile; the recording
    /// arrives on the receiver once complete (about [`probe::RECORD_MS`] later).
    fn echo_probe(&self) -> Result<tokio::sync::oneshot::Receiver<probe::Recording>, String> {
        Err("there is no audio engine".into())
    }
}

/// What the engine has seen since it started. Counters only grow; gauges are current values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioStats {
    /// 20 ms microphone frames handed to the transport.
    pub capture_frames: u64,
    /// Microphone frames dropped because the transport did not keep up.
    pub capture_dropped: u64,
    /// Capture overruns (the device filled up before we read it), each recovered.
    pub capture_xruns: u64,
    /// Playback underruns at the device (we did not write in time), each recovered.
    pub playback_xruns: u64,
    /// Times the jitter buffer ran dry in the middle of the assistant's speech (filled with silence).
    pub playback_underruns: u64,
    /// Assistant samples dropped because the playback buffer was full.
    pub playback_dropped: u64,
    /// Pauses in the assistant's audio cut short (ms) to bring a grown delay back down.
    pub playback_shed_ms: u64,
    /// Far-end reference samples the echo canceller did not get in time.
    pub reference_dropped: u64,
    /// How much audio the jitter buffer waits for before it starts playing.
    pub jitter_target_ms: u32,
    /// Assistant audio queued and not yet written to the device.
    pub queued_ms: u32,
    /// Set while a device is missing or failing (being reopened); names the device.
    pub device_problem: Option<String>,
    /// Times a device failed and had to be reopened (capture and playback together): a loss
    /// leaves this trace after the device is back.
    pub device_losses: u64,
    /// Times the speaker was silenced because the user was heard talking over it.
    pub local_barge_ins: u64,
    /// What the daemon adds to the call's delay: microphone to wire, wire to speaker.
    pub mic_to_wire: latency::Delays,
    pub wire_to_speaker: latency::Delays,
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
    fn item_heard(&self) -> ItemHeard {
        ItemHeard::default()
    }
    fn play_earcon(&self, _earcon: Earcon) {}
    fn set_capture(&self, _on: bool) {}
    fn set_volume(&self, _volume: f64) {}
    fn set_muted(&self, _muted: bool) {}
}

pub mod barge_in;
pub mod capture;
pub mod device;
pub mod devices;
pub mod earcons;
pub mod echo;
pub mod engine;
pub mod jitter;
pub mod latency;
pub mod opus;
pub mod playback;
pub mod probe;
pub mod resample;
pub(crate) mod shared;
#[doc(hidden)]
pub mod signals;
pub mod speaker_queue;
mod supervisor;
