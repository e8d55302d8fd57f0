//! The playback thread: pulls the assistant's audio from the jitter buffer a period at a time,
//! mixes in earcons, applies volume and mute, writes to ALSA, and hands exactly what it wrote
//! to the echo canceller as the far-end reference.
//!
//! When there is nothing to play it stops the device and sleeps until woken (a push, an earcon,
//! a flush), so an idle daemon costs nothing. Nothing here allocates once running.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtrb::Producer;
use tracing::debug;

use super::device::{self, Pcm, Trouble};
use super::earcons::Earcons;
use super::jitter::{self, JitterBuffer};
use super::shared::{Shared, Side};
use super::speaker_queue::SpeakerQueue;
use super::supervisor::{Device, DeviceUser};
use super::{duration_of, SAMPLE_RATE};
use crate::session::Earcon;

/// Longest period a device may hand us (the configuration allows up to 20 ms).
const MAX_PERIOD: usize = SAMPLE_RATE as usize / 10;

pub(crate) struct Playback {
    pub device: String,
    pub period_ms: u32,
    pub pcm: Option<Pcm>,
    pub jitter: JitterBuffer,
    /// The transports' side of the jitter buffer's ring, for its backlog (see `speaker_queue`).
    pub queue: Arc<Mutex<SpeakerQueue>>,
    /// What we wrote, for the echo canceller.
    pub reference: Producer<i16>,
    pub earcons: Earcons,
    pub shared: Arc<Shared>,
}

struct Mix {
    buf: Box<[i16; MAX_PERIOD]>,
    flush_seen: u64,
    earcon: Option<(Earcon, usize)>,
    /// A self-check sound being played, and how far.
    probe: Option<(Vec<i16>, usize)>,
    /// Samples of silence written since the last sound; the device is stopped once its whole
    /// buffer is silence, so that no tail is cut off.
    quiet: usize,
    running: bool,
    /// When the device last started, and what was written since: see [`pace`].
    started: Instant,
    written: u64,
    /// Assistant samples written since the last flush.
    audio_total: u64,
    /// Other samples (silence, earcons) written since the last assistant sample.
    after_audio: u64,
    /// Every sample written since the thread began: where each start falls in a recording of
    /// the device (logged at debug for the session benchmark).
    lifetime_written: u64,
}

/// A playback thread's work on whichever device is open.
struct PlaybackRun<'a> {
    playback: &'a mut Playback,
    mix: Mix,
}

impl DeviceUser for PlaybackRun<'_> {
    fn work(&mut self, pcm: &Pcm) -> Option<String> {
        self.playback.play_until_trouble(pcm, &mut self.mix)
    }

    fn away(&mut self) {
        // Keep the buffer moving (flushes, drains) while the device is away.
        self.playback.housekeeping(&mut self.mix);
    }

    fn lost(&mut self) {
        self.mix.running = false;
    }
}

impl Playback {
    /// One line per local barge-in: where the voice began in the microphone stream and when
    /// the speaker fell silent, on the same clock, so that the time to silence can be read.
    fn log_hush(&self) {
        if !self.shared.hush_unlogged.swap(false, Relaxed) {
            return;
        }
        let onset = self.shared.hush_onset_ms.load(Relaxed);
        match self.shared.capture_ms(Instant::now()) {
            Some(silent) => {
                if let Some(hook) = self.shared.on_silenced.get() {
                    hook(silent.saturating_sub(onset));
                }
                tracing::info!(
                onset_ms = onset,
                silent_ms = silent,
                "local barge-in: a voice at {onset} ms of the microphone stream; the speaker was silent at {silent} ms ({} ms later)",
                silent.saturating_sub(onset)
            )
            }
            None => tracing::info!("local barge-in: the speaker is silent"),
        }
    }

    pub fn run(mut self) {
        let mix = Mix {
            lifetime_written: 0,
            buf: Box::new([0; MAX_PERIOD]),
            flush_seen: self.shared.flush_gen.load(Relaxed),
            earcon: None,
            probe: None,
            quiet: usize::MAX,
            running: false,
            started: Instant::now(),
            written: 0,
            audio_total: 0,
            after_audio: 0,
        };
        let shared = Arc::clone(&self.shared);
        let name = self.device.clone();
        let device = Device {
            shared: &shared,
            name: &name,
            side: Side::Playback,
            period_ms: self.period_ms,
        };
        let pcm = self.pcm.take();
        device.supervise(
            pcm,
            &mut PlaybackRun {
                playback: &mut self,
                mix,
            },
        );
    }

    /// Flushes and earcon requests; the gauges for `stats()`.
    /// Returns whether playback was flushed.
    fn housekeeping(&mut self, m: &mut Mix) -> bool {
        let generation = self.shared.flush_gen.load(Relaxed);
        let flushed = generation != m.flush_seen;
        if flushed {
            m.flush_seen = generation;
            self.jitter.flush();
            m.audio_total = 0;
            m.after_audio = 0;
            self.shared.played_samples.store(0, Relaxed);
        }
        // Audio that arrived ahead of the ring: in as it makes room. Never wait for the lock
        // (a transport is pushing): the ring holds seconds, the next period tries again.
        if self.shared.speaker_backlog.load(Relaxed) {
            if let Ok(mut queue) = self.queue.try_lock() {
                let left = queue.refill();
                self.shared.speaker_backlog.store(left, Relaxed);
            }
        }
        let requested = self.shared.earcon.swap(0, Relaxed);
        if let Some(e) = Shared::earcon_from(requested) {
            m.earcon = Some((e, 0));
        }
        if self.shared.probe_pending.swap(false, Relaxed) {
            if let Some(sound) = self
                .shared
                .probe_sound
                .lock()
                .ok()
                .and_then(|mut s| s.take())
            {
                m.probe = Some((sound, 0));
            }
        }
        self.jitter.set_paced(self.shared.paced.load(Relaxed));
        self.shared
            .shed_samples
            .store(self.jitter.shed_samples(), Relaxed);
        self.shared
            .queued_samples
            .store(self.jitter.queued() as u64, Relaxed);
        self.shared
            .jitter_target_ms
            .store(self.jitter.target_ms(), Relaxed);
        self.shared
            .playback_underruns
            .store(self.jitter.underruns(), Relaxed);
        flushed
    }

    fn play_until_trouble(&mut self, pcm: &Pcm, m: &mut Mix) -> Option<String> {
        let io = match pcm.pcm.io_i16() {
            Ok(io) => io,
            Err(e) => return Some(device::reason(&e)),
        };
        let period = pcm.period.min(MAX_PERIOD);
        loop {
            if self.shared.stop.load(Relaxed) {
                return None;
            }
            if self.housekeeping(m) {
                if m.running && m.earcon.is_none() {
                    // Barge-in: what the device still holds goes too, not only our queue.
                    let _ = pcm.pcm.drop();
                    if let Err(e) = pcm.pcm.prepare() {
                        return Some(device::reason(&e));
                    }
                    m.running = false;
                    m.quiet = usize::MAX;
                }
                // Already stopped counts too: a hush the flush overtook is still logged once.
                if !m.running {
                    self.log_hush();
                }
            }
            if self.shared.hush.load(Relaxed) {
                self.shared.audible.store(false, Relaxed);
                // The user talks over the assistant: silent now, what the device holds too.
                // The queue is kept (and `played_samples` with it) until the daemon's flush,
                // so that a truncation still says what was heard.
                if m.running {
                    let _ = pcm.pcm.drop();
                    if let Err(e) = pcm.pcm.prepare() {
                        return Some(device::reason(&e));
                    }
                    m.running = false;
                    m.quiet = usize::MAX;
                }
                self.log_hush();
                std::thread::park_timeout(Duration::from_millis(10));
                continue;
            }
            if self.jitter.is_idle()
                && m.earcon.is_none()
                && m.probe.is_none()
                && m.quiet >= pcm.buffer
            {
                self.shared.audible.store(false, Relaxed);
                if m.running {
                    // Everything queued is silence: stop the device rather than feed it zeros.
                    let _ = pcm.pcm.drop();
                    if let Err(e) = pcm.pcm.prepare() {
                        return Some(device::reason(&e));
                    }
                    m.running = false;
                }
                // Woken early by a push, an earcon or a flush.
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            let out = &mut m.buf[..period];
            let fill = self.jitter.fill(out);
            if fill.audio > 0 {
                if !self.shared.audible.swap(true, Relaxed) {
                    if let Some(hook) = self.shared.on_audible.get() {
                        hook();
                    }
                }
                m.audio_total += fill.audio as u64;
                m.after_audio = (period - fill.audio) as u64;
            } else {
                m.after_audio += period as u64;
            }
            if fill.drained {
                self.shared.drained();
            }
            let mut sound = fill.audio > 0;
            if let Some((e, pos)) = m.earcon {
                let pos = mix_in(out, self.earcons.get(e), pos);
                m.earcon = (pos < self.earcons.get(e).len()).then_some((e, pos));
                sound = true;
            }
            if let Some((probe, pos)) = &mut m.probe {
                *pos = mix_in(out, probe, *pos);
                sound = true;
                if *pos >= probe.len() {
                    m.probe = None;
                }
            }
            let gain = self.shared.gain();
            if gain < 1.0 {
                for s in out.iter_mut() {
                    *s = (f32::from(*s) * gain) as i16;
                }
            }
            m.quiet = if sound {
                0
            } else {
                m.quiet.saturating_add(out.len())
            };
            // The far end goes to the canceller before the device has it: its echo can then
            // never reach the microphone ahead of it, however late this thread is scheduled.
            let dropped = jitter::push(&mut self.reference, &m.buf[..period]);
            if dropped > 0 {
                self.shared
                    .reference_dropped
                    .fetch_add(dropped as u64, Relaxed);
            }
            if let Some(why) = self.write(pcm, &io, m, period) {
                return Some(why);
            }
            // Played means heard: what the device still holds of the assistant is not yet.
            // The newest `after_audio` samples queued there are not the assistant's.
            let queued = pcm.pcm.delay().map_or(0, |d| d.max(0) as u64);
            self.shared.latency.device_wrote(queued, Instant::now());
            let unheard = queued.saturating_sub(m.after_audio).min(m.audio_total);
            self.shared
                .played_samples
                .store(m.audio_total - unheard, Relaxed);
            if !m.running {
                m.running = true;
                m.started = Instant::now();
                m.written = 0;
                debug!(device = %self.device, offset = m.lifetime_written, "playback stream running");
            }
            m.written += period as u64;
            m.lifetime_written += period as u64;
            pace(m.started, m.written, pcm.buffer);
        }
    }

    /// Writes one period, waiting (bounded) for room; recovers xruns.
    fn write(
        &self,
        pcm: &Pcm,
        io: &alsa::pcm::IO<'_, i16>,
        m: &Mix,
        period: usize,
    ) -> Option<String> {
        let mut done = 0;
        let mut stall = device::StallWatch::default();
        while done < period {
            if self.shared.stop.load(Relaxed) {
                return None;
            }
            match io.writei(&m.buf[done..period]) {
                Ok(n) => {
                    if n > 0 {
                        stall.moved();
                    }
                    done += n;
                    continue;
                }
                Err(e) => match device::trouble(&pcm.pcm, e) {
                    Trouble::Again => {}
                    Trouble::Xrun => {
                        self.shared.playback_xruns.fetch_add(1, Relaxed);
                        continue;
                    }
                    Trouble::Lost(why) => return Some(why),
                },
            }
            match pcm.pcm.wait(Some(device::WAIT_MS)) {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(why) = stall.timed_out() {
                        return Some(why);
                    }
                }
                Err(e) => match device::trouble(&pcm.pcm, e) {
                    Trouble::Again => {}
                    Trouble::Xrun => {
                        self.shared.playback_xruns.fetch_add(1, Relaxed);
                    }
                    Trouble::Lost(why) => return Some(why),
                },
            }
        }
        None
    }
}

/// Adds `sound` from `pos` into `out` (earcons and self-check sounds over the assistant);
/// returns the position after what was mixed.
fn mix_in(out: &mut [i16], sound: &[i16], pos: usize) -> usize {
    let n = sound.len().saturating_sub(pos).min(out.len());
    for (o, &c) in out.iter_mut().zip(&sound[pos..pos + n]) {
        *o = o.saturating_add(c);
    }
    pos + n
}

/// A device with no clock of its own (ALSA's `null`, a `file` plugin) takes samples as fast as
/// they come; keep it to real time, as a card would be, so that buffering, drain and earcon
/// timing behave as on a card and the thread writes one period per period. A card is never
/// further ahead than its buffer (plus clock drift well under 1 %).
fn pace(started: Instant, written: u64, buffer: usize) {
    let audio = duration_of(written);
    let buffered = duration_of(buffer as u64);
    let elapsed = started.elapsed();
    if let Some(early) = audio.checked_sub(elapsed + buffered + CLOCKLESS_SLACK + elapsed / 100) {
        // A period more than needed: the thread sleeps every other period, as a card's
        // `avail_min` of two periods would wake it.
        std::thread::sleep(early + Duration::from_millis(10));
    }
}

/// How far beyond its buffer a device may take samples before it is taken for one with no clock.
const CLOCKLESS_SLACK: Duration = Duration::from_millis(50);
