//! The audio engine: opens the ALSA devices, runs the capture and playback threads, and is what
//! the daemon and the transports talk to ([`AudioControl`], [`Speaker`], [`Microphone`]).
//!
//! Threads and the rest of the daemon share only atomics, two SPSC rings (speaker audio in,
//! far-end reference across) and the bounded microphone channel. Every call from the async side
//! returns at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Instant;

use rtrb::RingBuffer;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::barge_in::LocalVoice;
use super::capture::Capture;
use super::device::{self, DeviceError};
use super::earcons::Earcons;
use super::echo::{EchoCanceller, EchoError};
use super::jitter::{self, JitterSettings};
use super::latency::LatencyMeter;
use super::playback::Playback;
use super::probe;
use super::shared::{Recorder, Shared, Side};
use super::speaker_queue::SpeakerQueue;
use super::{AudioControl, AudioStats, ItemHeard, MicFrame, Microphone, Speaker, SAMPLE_RATE};
use crate::config;
use crate::session::Earcon;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Echo(#[from] EchoError),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// Knobs that are not in the configuration file.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Microphone frames queued for a slow transport before new ones are dropped.
    pub mic_frames: usize,
    /// Assistant audio held for the speaker at most; the WebSocket delivers faster than real
    /// time. The first [`SPEAKER_RING_S`] of it is a ring, the rest a backlog used only then.
    pub playback_buffer_s: u32,
    /// Capture on from the very first sample (tests, benchmarks); the daemon turns it on itself.
    pub capture_on: bool,
    /// A device that cannot be opened at start is logged, shown in `device_problem` and retried
    /// in the background instead of failing the start (a USB microphone still enumerating at
    /// boot). Off: the start fails with an error naming the device.
    pub wait_for_devices: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            mic_frames: 50,
            playback_buffer_s: 30,
            capture_on: false,
            wait_for_devices: false,
        }
    }
}

/// Seconds of the speaker's ring: far more than a paced source (WebRTC) ever has queued.
pub const SPEAKER_RING_S: u32 = 2;

/// The real engine. Dropping it stops and joins both threads (within ~100 ms).
pub struct Engine {
    shared: Arc<Shared>,
    speaker: Arc<Mutex<SpeakerQueue>>,
    microphone: Microphone,
    playback_thread: Thread,
    earcons: bool,
    threads: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Opens both devices and starts the threads. A device that cannot be opened is an error
    /// naming it; one that disappears later is reopened in the background.
    pub fn start(config: &config::Audio) -> Result<Engine, AudioError> {
        Engine::start_with(config, EngineOptions::default())
    }

    pub fn start_with(
        config: &config::Audio,
        options: EngineOptions,
    ) -> Result<Engine, AudioError> {
        if config.sample_rate != SAMPLE_RATE {
            // Opus, the canceller and the transports all run at 48 kHz; ALSA's plug converts.
            warn!(
                "audio.sample_rate = {} is not used: the engine runs at 48 kHz \
                 (a `plughw:`/`plug:` device converts for the card)",
                config.sample_rate
            );
        }
        let shared = Arc::new(Shared::default());
        let open = |name: &str, side: Side| match device::open(name, side, config.period_ms) {
            Ok(pcm) => Ok(Some(pcm)),
            Err(e) if options.wait_for_devices => {
                error!("{e}; will keep trying");
                shared.set_problem(side, Some(format!("{e}; retrying")));
                Ok(None)
            }
            Err(e) => Err(AudioError::Device(e)),
        };
        let capture_pcm = open(&config.capture_device, Side::Capture)?;
        let playback_pcm = open(&config.playback_device, Side::Playback)?;
        let barge_in = config.local_barge_in && config.echo_cancellation;
        let echo = if barge_in {
            EchoCanceller::with_separate_denoiser(true, config.noise_suppression)?
        } else {
            EchoCanceller::new(config.echo_cancellation, config.noise_suppression)?
        };
        shared.capture_on.store(options.capture_on, Relaxed);
        shared
            .volume_bits
            .store((config.volume.clamp(0.0, 1.0) as f32).to_bits(), Relaxed);
        let jitter = JitterSettings::with_prebuffer(config.jitter_buffer_ms);
        shared.jitter_target_ms.store(jitter.start_ms, Relaxed);

        let held = SAMPLE_RATE as usize * options.playback_buffer_s.max(1) as usize;
        let ring = (SAMPLE_RATE * SPEAKER_RING_S) as usize;
        let (speaker, jitter) = jitter::channel(ring.min(held), jitter);
        let speaker = Arc::new(Mutex::new(SpeakerQueue::new(
            speaker,
            held.saturating_sub(ring),
        )));
        // Half a second of far end: the capture thread trims it to 300 ms anyway.
        let (reference_tx, reference_rx) = RingBuffer::new(SAMPLE_RATE as usize / 2);
        let (frames_tx, frames_rx) = mpsc::channel::<MicFrame>(options.mic_frames.max(1));

        let playback = Playback {
            device: config.playback_device.clone(),
            period_ms: config.period_ms,
            pcm: playback_pcm,
            jitter,
            queue: speaker.clone(),
            reference: reference_tx,
            earcons: Earcons::default(),
            shared: shared.clone(),
        };
        // Local barge-in hears the user on the cleaned microphone: without the canceller our
        // own voice would be heard as the user's.
        let voice = if barge_in {
            Some(LocalVoice::new(
                config.barge_in_threshold_dbfs,
                config.barge_in_min_ms,
            ))
        } else {
            if config.local_barge_in {
                warn!("local barge-in is off: it needs audio.echo_cancellation");
            }
            None
        };
        let capture = Capture {
            device: config.capture_device.clone(),
            period_ms: config.period_ms,
            frame_samples: (SAMPLE_RATE / 1000 * config.frame_ms) as usize,
            pcm: capture_pcm,
            echo,
            reference: reference_rx,
            frames: frames_tx,
            shared: shared.clone(),
            voice,
        };
        let playback_handle = std::thread::Builder::new()
            .name("rtv-playback".into())
            .spawn(move || playback.run())
            .map_err(|e| AudioError::Thread("playback", e))?;
        let playback_thread = playback_handle.thread().clone();
        let capture_handle = match std::thread::Builder::new()
            .name("rtv-capture".into())
            .spawn(move || capture.run())
        {
            Ok(h) => h,
            Err(e) => {
                shared.stop.store(true, Relaxed);
                let _ = playback_handle.join();
                return Err(AudioError::Thread("capture", e));
            }
        };
        Ok(Engine {
            shared,
            speaker,
            microphone: Arc::new(tokio::sync::Mutex::new(frames_rx)),
            playback_thread,
            earcons: config.earcons,
            threads: vec![playback_handle, capture_handle],
        })
    }

    /// The cleaned microphone, for the transports.
    pub fn microphone(&self) -> Microphone {
        self.microphone.clone()
    }

    /// Where the transports record when a microphone frame went on the wire.
    pub fn latency(&self) -> Arc<LatencyMeter> {
        self.shared.latency.clone()
    }

    /// Called (from the capture thread) when the user is heard talking over the assistant;
    /// the speaker is already silent. Set once.
    pub fn on_local_speech(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.on_local_speech.set(Box::new(hook));
    }

    /// Called (from the playback thread) after a local barge-in, once the speaker is silent:
    /// how many ms after the user's voice began. Set once.
    pub fn on_silenced(&self, hook: impl Fn(u64) + Send + Sync + 'static) {
        let _ = self.shared.on_silenced.set(Box::new(hook));
    }

    /// Called (from the playback thread) when the assistant's audio starts to play after
    /// quiet. Set once.
    pub fn on_audible(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.on_audible.set(Box::new(hook));
    }

    /// Called (from the playback thread) when the assistant's audio has finished playing.
    /// Set once; later calls are ignored.
    pub fn on_drained(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.on_drained.set(Box::new(hook));
    }
}

impl Engine {
    fn speaker_ready(&self) -> Result<(), String> {
        match self.shared.playback_problem() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    fn play_probe(&self, sound: Vec<i16>) -> Result<(), String> {
        let mut slot = self
            .shared
            .probe_sound
            .lock()
            .map_err(|_| "the playback thread failed".to_owned())?;
        *slot = Some(sound);
        self.shared.probe_pending.store(true, Relaxed);
        self.playback_thread.unpark();
        Ok(())
    }
}

impl Speaker for Engine {
    fn push(&self, pcm: &[i16]) {
        let dropped = match self.speaker.lock() {
            Ok(mut queue) => {
                // While the assistant plays, this audio waits behind what is queued: the
                // wire-to-speaker delay. Before it plays, the wait is the jitter buffer's
                // pre-buffer, which `jitter_target_ms` already says.
                if self.shared.audible.load(Relaxed) {
                    self.shared
                        .latency
                        .audio_arrived(queue.queued() as u64, Instant::now());
                }
                let dropped = queue.push(pcm);
                if queue.has_backlog() {
                    self.shared.speaker_backlog.store(true, Relaxed);
                }
                dropped
            }
            Err(_) => pcm.len(),
        };
        self.shared
            .pushed_samples
            .fetch_add((pcm.len() - dropped.min(pcm.len())) as u64, Relaxed);
        if dropped > 0 {
            self.shared
                .playback_dropped
                .fetch_add(dropped as u64, Relaxed);
        }
        self.playback_thread.unpark();
    }

    fn item_boundary(&self) {
        let pushed = self.shared.pushed_samples.load(Relaxed);
        self.shared.item_start.store(pushed, Relaxed);
    }

    fn set_paced(&self, paced: bool) {
        self.shared.paced.store(paced, Relaxed);
    }
}

impl AudioControl for Engine {
    fn flush_playback(&self) {
        // The backlog first: playback must not move any of it into the ring it is to empty.
        if let Ok(mut queue) = self.speaker.lock() {
            queue.clear_backlog();
        }
        self.shared.flush_gen.fetch_add(1, Relaxed);
        // After the flush is posted: playback must not resume the audio it held.
        self.shared.hush.store(false, Relaxed);
        self.shared.played_samples.store(0, Relaxed);
        self.shared.pushed_samples.store(0, Relaxed);
        self.shared.item_start.store(0, Relaxed);
        self.playback_thread.unpark();
    }

    fn item_heard(&self) -> ItemHeard {
        item_heard(
            self.shared.played_samples.load(Relaxed),
            self.shared.pushed_samples.load(Relaxed),
            self.shared.item_start.load(Relaxed),
        )
    }

    fn play_earcon(&self, earcon: Earcon) {
        if self.earcons {
            self.shared
                .earcon
                .store(Shared::earcon_code(earcon), Relaxed);
            self.playback_thread.unpark();
        }
    }

    fn set_capture(&self, on: bool) {
        self.shared.capture_on.store(on, Relaxed);
    }

    fn set_volume(&self, volume: f64) {
        let v = if volume.is_finite() {
            volume.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.shared.volume_bits.store((v as f32).to_bits(), Relaxed);
    }

    fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Relaxed);
    }

    fn test_speaker(&self) -> Result<u32, String> {
        self.speaker_ready()?;
        self.play_probe(probe::test_tone())?;
        Ok(probe::TONE_MS)
    }

    fn echo_probe(&self) -> Result<oneshot::Receiver<probe::Recording>, String> {
        self.speaker_ready()?;
        if let Some(problem) = self.shared.capture_problem() {
            return Err(problem);
        }
        let (done, receiver) = oneshot::channel();
        {
            let mut slot = self
                .shared
                .recorder
                .lock()
                .map_err(|_| "the capture thread failed".to_owned())?;
            if slot.is_some() {
                return Err("an echo check is already running".into());
            }
            let samples = SAMPLE_RATE as usize / 1000 * probe::RECORD_MS as usize;
            *slot = Some(Recorder {
                recording: probe::Recording::with_capacity(samples),
                done,
            });
        }
        self.shared.recording.store(true, Relaxed);
        self.play_probe(probe::chirp())?;
        Ok(receiver)
    }

    fn stats(&self) -> AudioStats {
        let s = &self.shared;
        AudioStats {
            capture_frames: s.capture_frames.load(Relaxed),
            capture_dropped: s.capture_dropped.load(Relaxed),
            capture_xruns: s.capture_xruns.load(Relaxed),
            playback_xruns: s.playback_xruns.load(Relaxed),
            playback_underruns: s.playback_underruns.load(Relaxed),
            playback_dropped: s.playback_dropped.load(Relaxed),
            playback_shed_ms: s.shed_samples.load(Relaxed) / u64::from(SAMPLE_RATE / 1000),
            reference_dropped: s.reference_dropped.load(Relaxed),
            jitter_target_ms: s.jitter_target_ms.load(Relaxed),
            queued_ms: u32::try_from(s.queued_samples.load(Relaxed) / 48).unwrap_or(u32::MAX),
            device_problem: s.problem(),
            device_losses: s.device_losses.load(Relaxed),
            local_barge_ins: s.local_barge_ins.load(Relaxed),
            mic_to_wire: s.latency.mic_to_wire(),
            wire_to_speaker: s.latency.wire_to_speaker(),
        }
    }
}

/// Playback is first in, first out: the current item's first sample is heard once everything
/// pushed before it has been. Counts are samples since the last flush.
fn item_heard(played: u64, pushed: u64, item_start: u64) -> ItemHeard {
    let delivered = pushed.saturating_sub(item_start);
    let heard = played.saturating_sub(item_start).min(delivered);
    let ms =
        |samples: u64| u32::try_from(samples / u64::from(SAMPLE_RATE / 1000)).unwrap_or(u32::MAX);
    ItemHeard {
        heard_ms: ms(heard),
        delivered_ms: ms(delivered),
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.playback_thread.unpark();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 48;

    #[test]
    fn heard_counts_only_the_current_item_and_never_past_what_arrived() {
        // Item 1: 1000 ms, all heard; item 2 began after it, 400 ms arrived, 1150 ms played.
        let h = item_heard(1150 * MS, 1400 * MS, 1000 * MS);
        assert_eq!(
            h,
            ItemHeard {
                heard_ms: 150,
                delivered_ms: 400
            }
        );
        // Item 2 not reached yet: nothing of it heard.
        assert_eq!(item_heard(900 * MS, 1400 * MS, 1000 * MS).heard_ms, 0);
        // Played past what arrived (counters read a moment apart): capped.
        assert_eq!(item_heard(1500 * MS, 1400 * MS, 1000 * MS).heard_ms, 400);
    }
}
