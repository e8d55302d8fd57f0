//! What the engine's handle and its two ALSA threads share: counters, switches and the
//! device problems, all atomics or short locks. A leaf: it imports nothing else of the engine
//! but the self-check's recording type and the latency meter.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::latency::LatencyMeter;
use crate::session::Earcon;

/// Which half of the sound hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Capture,
    Playback,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Capture => "capture",
            Side::Playback => "playback",
        })
    }
}

pub(crate) type Hook = Box<dyn Fn() + Send + Sync>;

/// An echo check's recording in progress.
pub(crate) struct Recorder {
    pub recording: super::probe::Recording,
    pub done: tokio::sync::oneshot::Sender<super::probe::Recording>,
}

/// State shared between the engine's handle and its threads.
#[derive(Default)]
pub(crate) struct Shared {
    pub stop: AtomicBool,
    pub capture_on: AtomicBool,
    pub capture_frames: AtomicU64,
    pub capture_dropped: AtomicU64,
    pub capture_xruns: AtomicU64,
    /// Microphone blocks the echo canceller has processed.
    pub echo_blocks: AtomicU64,
    pub playback_xruns: AtomicU64,
    pub playback_underruns: AtomicU64,
    pub playback_dropped: AtomicU64,
    pub reference_dropped: AtomicU64,
    /// Devices that failed while open and were reopened.
    pub device_losses: AtomicU64,
    pub jitter_target_ms: AtomicU32,
    pub queued_samples: AtomicU64,
    /// Assistant samples heard since the last flush (written, and no longer queued in the device).
    pub played_samples: AtomicU64,
    /// Assistant samples pushed since the last flush, and where among them the current item began.
    pub pushed_samples: AtomicU64,
    pub item_start: AtomicU64,
    pub flush_gen: AtomicU64,
    /// f32 bits of the volume, 0.0–1.0.
    pub volume_bits: AtomicU32,
    pub muted: AtomicBool,
    /// 0 none, else an [`Earcon`] + 1.
    pub earcon: AtomicU8,
    /// The assistant's audio is in the speaker (written, and not yet played out): what local
    /// barge-in listens over. Earcons do not count.
    pub audible: AtomicBool,
    /// Local barge-in: playback holds its audio and goes silent until the next flush.
    pub hush: AtomicBool,
    pub local_barge_ins: AtomicU64,
    /// Where in the microphone stream the voice that set `hush` began (ms), for the log line
    /// that says how long the speaker took to fall silent.
    pub hush_onset_ms: AtomicU64,
    /// A local barge-in whose silence has not been logged yet (by whichever path silences
    /// the speaker first: the hush, or the daemon's flush right behind it).
    pub hush_unlogged: AtomicBool,
    /// When the microphone stream now open began.
    pub capture_epoch: Mutex<Option<Instant>>,
    pub on_local_speech: OnceLock<Hook>,
    /// After a local barge-in: the speaker fell silent, this many ms after the voice began.
    pub on_silenced: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
    /// The assistant's audio began to play (the first of it written to the device after
    /// quiet): where "time to first audio" ends.
    pub on_audible: OnceLock<Hook>,
    /// A self-check sound for playback to take (the test tone, the chirp), mixed like an
    /// earcon but played whatever `audio.earcons` says.
    pub probe_sound: Mutex<Option<Vec<i16>>>,
    pub probe_pending: AtomicBool,
    /// The echo check's recording, filled by the capture thread block by block, and where to
    /// send it once full.
    pub recorder: Mutex<Option<Recorder>>,
    pub recording: AtomicBool,
    capture_problem: Mutex<Option<String>>,
    playback_problem: Mutex<Option<String>>,
    pub on_drained: OnceLock<Hook>,
    /// The speaker's queue has a backlog behind its ring, for playback to move in.
    pub speaker_backlog: AtomicBool,
    /// The speaker's audio arrives at the pace it plays ([`super::Speaker::set_paced`]).
    pub paced: AtomicBool,
    /// Samples of delay playback took back (quiet blocks dropped, sound shortened).
    pub shed_samples: AtomicU64,
    /// The daemon's share of the call's delay, both ways.
    pub latency: Arc<LatencyMeter>,
}

impl Shared {
    pub fn set_problem(&self, side: Side, problem: Option<String>) {
        let slot = match side {
            Side::Capture => &self.capture_problem,
            Side::Playback => &self.playback_problem,
        };
        if let Ok(mut p) = slot.lock() {
            *p = problem;
        }
    }

    pub fn capture_problem(&self) -> Option<String> {
        self.capture_problem.lock().ok().and_then(|p| p.clone())
    }

    pub fn playback_problem(&self) -> Option<String> {
        self.playback_problem.lock().ok().and_then(|p| p.clone())
    }

    pub fn problem(&self) -> Option<String> {
        match (self.capture_problem(), self.playback_problem()) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    }

    pub fn sleep_unless_stopped(&self, total: Duration) {
        let end = Instant::now() + total;
        while !self.stop.load(Relaxed) {
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    pub fn earcon_from(code: u8) -> Option<Earcon> {
        match code {
            1 => Some(Earcon::Start),
            2 => Some(Earcon::Stop),
            3 => Some(Earcon::Error),
            _ => None,
        }
    }

    pub fn earcon_code(e: Earcon) -> u8 {
        match e {
            Earcon::Start => 1,
            Earcon::Stop => 2,
            Earcon::Error => 3,
        }
    }

    /// Milliseconds of the open microphone stream at `at`.
    pub fn capture_ms(&self, at: Instant) -> Option<u64> {
        let epoch = (*self.capture_epoch.lock().ok()?)?;
        Some(at.saturating_duration_since(epoch).as_millis() as u64)
    }

    pub fn local_speech(&self) {
        if let Some(hook) = self.on_local_speech.get() {
            hook();
        }
    }

    pub fn drained(&self) {
        if let Some(hook) = self.on_drained.get() {
            hook();
        }
    }

    pub fn gain(&self) -> f32 {
        if self.muted.load(Relaxed) {
            0.0
        } else {
            f32::from_bits(self.volume_bits.load(Relaxed))
        }
    }
}
