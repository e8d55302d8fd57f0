//! The adaptive jitter buffer between the transports (which push decoded audio in bursts, on
//! the network's schedule) and the playback thread (which pulls one period at a time, on the
//! sound card's clock).
//!
//! Samples travel through a lock-free SPSC ring allocated once; the consumer side decides when
//! to play. It waits for `target` samples before it starts (pre-buffer), fills gaps with silence,
//! grows `target` each time it runs dry in the middle of speech (jitter) and shrinks it again
//! after a long calm stretch. A gap longer than `hold` is the end of the speech: it reports
//! `drained` once and goes idle. Time is counted in samples pulled, so the logic is the same on
//! a real card and in tests.

use rtrb::{Consumer, Producer, RingBuffer};

use super::SAMPLE_RATE;

const SAMPLES_PER_MS: usize = (SAMPLE_RATE / 1000) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterSettings {
    /// Pre-buffer never goes below this.
    pub min_ms: u32,
    /// Pre-buffer when the engine starts.
    pub start_ms: u32,
    /// Pre-buffer never goes above this.
    pub max_ms: u32,
    /// How much one underrun adds, and one calm stretch takes away.
    pub step_ms: u32,
    /// Audio played without an underrun before the pre-buffer shrinks by a step.
    pub calm_ms: u32,
    /// Silence after which the speech is over (playback drained).
    pub hold_ms: u32,
}

impl Default for JitterSettings {
    fn default() -> Self {
        JitterSettings {
            min_ms: 40,
            start_ms: 60,
            max_ms: 300,
            step_ms: 20,
            calm_ms: 5_000,
            hold_ms: 250,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing to play and the end was reported.
    Idle,
    /// Waiting for the pre-buffer; `waited` samples of silence pulled so far with audio queued.
    Buffering {
        waited: usize,
    },
    Playing,
    /// Ran dry while playing; `gap` samples of silence pulled so far.
    Dry {
        gap: usize,
    },
}

/// What one [`JitterBuffer::fill`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fill {
    /// Samples of real audio at the start of the output (the rest is silence).
    pub audio: usize,
    /// The speech has ended: reported once per stretch of playing.
    pub drained: bool,
}

/// Writes as much of `pcm` as fits; returns how many samples were dropped.
pub fn push(producer: &mut Producer<i16>, pcm: &[i16]) -> usize {
    let n = producer.slots().min(pcm.len());
    if n > 0 {
        if let Ok(chunk) = producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(pcm[..n].iter().copied());
        }
    }
    pcm.len() - n
}

pub struct JitterBuffer {
    consumer: Consumer<i16>,
    settings: JitterSettings,
    state: State,
    target: usize,
    calm: usize,
    underruns: u64,
}

/// A ring of `capacity` samples: the producer for the transports, the buffer for playback.
pub fn channel(capacity: usize, settings: JitterSettings) -> (Producer<i16>, JitterBuffer) {
    let (producer, consumer) = RingBuffer::new(capacity);
    let buffer = JitterBuffer {
        consumer,
        settings,
        state: State::Idle,
        target: settings.start_ms as usize * SAMPLES_PER_MS,
        calm: 0,
        underruns: 0,
    };
    (producer, buffer)
}

impl JitterBuffer {
    /// Fills `out` with audio and silence; never blocks.
    pub fn fill(&mut self, out: &mut [i16]) -> Fill {
        let avail = self.consumer.slots();
        match self.state {
            State::Idle | State::Buffering { .. } if avail == 0 => {
                out.fill(0);
                return Fill::default();
            }
            State::Idle => self.state = State::Buffering { waited: 0 },
            State::Dry { gap } if avail == 0 => {
                out.fill(0);
                let gap = gap + out.len();
                if gap >= self.settings.hold_ms as usize * SAMPLES_PER_MS {
                    self.state = State::Idle;
                    return Fill {
                        audio: 0,
                        drained: true,
                    };
                }
                self.state = State::Dry { gap };
                return Fill::default();
            }
            State::Dry { .. } => {
                // Audio came back before the hold ran out: the network was late, not finished.
                self.underruns += 1;
                self.calm = 0;
                let step = self.settings.step_ms as usize * SAMPLES_PER_MS;
                let max = self.settings.max_ms as usize * SAMPLES_PER_MS;
                self.target = (self.target + step).min(max);
                self.state = State::Buffering { waited: 0 };
            }
            State::Buffering { .. } | State::Playing => {}
        }
        if let State::Buffering { waited } = self.state {
            // A short tail below the target must still play: give it the target's time.
            if avail < self.target && waited < self.target {
                out.fill(0);
                self.state = State::Buffering {
                    waited: waited + out.len(),
                };
                return Fill::default();
            }
            self.state = State::Playing;
        }
        let n = self.read(out);
        out[n..].fill(0);
        self.calm += n;
        if self.calm >= self.settings.calm_ms as usize * SAMPLES_PER_MS {
            self.calm = 0;
            let step = self.settings.step_ms as usize * SAMPLES_PER_MS;
            let min = self.settings.min_ms as usize * SAMPLES_PER_MS;
            self.target = self.target.saturating_sub(step).max(min);
        }
        if n < out.len() {
            self.state = State::Dry { gap: out.len() - n };
        }
        Fill {
            audio: n,
            drained: false,
        }
    }

    fn read(&mut self, out: &mut [i16]) -> usize {
        let n = self.consumer.slots().min(out.len());
        match self.consumer.read_chunk(n) {
            Ok(chunk) => {
                let (a, b) = chunk.as_slices();
                out[..a.len()].copy_from_slice(a);
                out[a.len()..a.len() + b.len()].copy_from_slice(b);
                chunk.commit_all();
                n
            }
            Err(_) => 0,
        }
    }

    /// Drops everything queued (barge-in). The learned target is kept.
    pub fn flush(&mut self) {
        let n = self.consumer.slots();
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            chunk.commit_all();
        }
        self.state = State::Idle;
    }

    /// Nothing queued and nothing in progress: playback may stop writing.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle && self.consumer.is_empty()
    }

    pub fn queued(&self) -> usize {
        self.consumer.slots()
    }

    pub fn target_ms(&self) -> u32 {
        (self.target / SAMPLES_PER_MS) as u32
    }

    pub fn underruns(&self) -> u64 {
        self.underruns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: usize = 480;

    fn settings() -> JitterSettings {
        JitterSettings {
            min_ms: 40,
            start_ms: 60,
            max_ms: 100,
            step_ms: 20,
            calm_ms: 1_000,
            hold_ms: 100,
        }
    }

    fn ramp(start: i16, n: usize) -> Vec<i16> {
        (0..n).map(|i| start.wrapping_add(i as i16) | 1).collect()
    }

    #[test]
    fn waits_for_the_target_then_plays_in_order() {
        let (mut tx, mut jb) = channel(48_000, settings());
        let mut out = [0i16; PERIOD];
        assert_eq!(push(&mut tx, &ramp(0, 2000)), 0);
        // 2000 samples < 60 ms (2880): silence while the pre-buffer fills.
        assert_eq!(jb.fill(&mut out).audio, 0);
        assert!(out.iter().all(|&s| s == 0));
        push(&mut tx, &ramp(2000, 2000));
        let f = jb.fill(&mut out);
        assert_eq!(f.audio, PERIOD);
        assert_eq!(&out[..], &ramp(0, 2000)[..PERIOD]);
    }

    #[test]
    fn a_short_tail_still_plays_after_the_target_time() {
        let (mut tx, mut jb) = channel(48_000, settings());
        let mut out = [0i16; PERIOD];
        push(&mut tx, &ramp(0, 500));
        let mut silent = 0;
        let mut played = Vec::new();
        for _ in 0..20 {
            let f = jb.fill(&mut out);
            if f.audio == 0 && played.is_empty() {
                silent += 1;
            }
            played.extend_from_slice(&out[..f.audio]);
        }
        assert_eq!(played, ramp(0, 500));
        // 60 ms of waiting = 6 periods of 10 ms.
        assert_eq!(silent, 6);
    }

    #[test]
    fn underrun_fills_silence_counts_and_grows_the_target() {
        let (mut tx, mut jb) = channel(48_000, settings());
        let mut out = [7i16; PERIOD];
        push(&mut tx, &ramp(0, 3000));
        let mut audio = 0;
        for _ in 0..7 {
            audio += jb.fill(&mut out).audio;
        }
        assert_eq!(audio, 3000);
        // The last period was partial: its tail is silence.
        assert!(out[3000 - 6 * PERIOD..].iter().all(|&s| s == 0));
        assert_eq!(jb.underruns(), 0);
        assert_eq!(jb.target_ms(), 60);
        // Audio comes back within the hold: that was jitter.
        push(&mut tx, &ramp(0, 480));
        let f = jb.fill(&mut out);
        assert_eq!(f.audio, 0, "re-buffering after an underrun");
        assert_eq!(jb.underruns(), 1);
        assert_eq!(jb.target_ms(), 80);
        // Repeated jitter grows it to the ceiling, never past.
        for _ in 0..5 {
            // Re-buffer, play the 10 ms, run dry for less than the hold.
            for _ in 0..12 {
                jb.fill(&mut out);
            }
            push(&mut tx, &ramp(0, 480));
        }
        jb.fill(&mut out);
        assert_eq!(jb.underruns(), 6);
        assert_eq!(jb.target_ms(), 100);
    }

    #[test]
    fn calm_playback_shrinks_the_target_to_the_floor() {
        let (mut tx, mut jb) = channel(48_000 * 10, settings());
        let mut out = [0i16; PERIOD];
        // One underrun: target 80 ms.
        push(&mut tx, &ramp(0, 3000));
        for _ in 0..8 {
            jb.fill(&mut out);
        }
        push(&mut tx, &ramp(0, 48_000 * 4));
        jb.fill(&mut out);
        assert_eq!(jb.target_ms(), 80);
        // 4 s of steady audio: a step down per calm second, down to the 40 ms floor.
        for _ in 0..400 {
            jb.fill(&mut out);
        }
        assert_eq!(jb.target_ms(), 40);
        assert_eq!(jb.underruns(), 1);
    }

    #[test]
    fn drained_is_reported_once_after_the_hold() {
        let (mut tx, mut jb) = channel(48_000, settings());
        let mut out = [0i16; PERIOD];
        push(&mut tx, &ramp(0, 4800));
        let mut drained = 0;
        let mut first = None;
        for i in 0..40 {
            if jb.fill(&mut out).drained {
                drained += 1;
                first.get_or_insert(i);
            }
        }
        assert_eq!(drained, 1);
        // 10 periods of audio, then 100 ms of hold.
        assert_eq!(first, Some(19));
        assert!(jb.is_idle());
        assert_eq!(jb.underruns(), 0, "the end of speech is not an underrun");
    }

    #[test]
    fn flush_drops_everything_at_once() {
        let (mut tx, mut jb) = channel(48_000, settings());
        let mut out = [0i16; PERIOD];
        push(&mut tx, &ramp(0, 10_000));
        jb.fill(&mut out);
        assert!(jb.queued() > 0);
        jb.flush();
        assert_eq!(jb.queued(), 0);
        assert!(jb.is_idle());
        let f = jb.fill(&mut out);
        assert_eq!(f, Fill::default());
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn a_full_ring_drops_and_counts_instead_of_growing() {
        let (mut tx, _jb) = channel(1000, settings());
        assert_eq!(push(&mut tx, &ramp(0, 800)), 0);
        assert_eq!(push(&mut tx, &ramp(0, 800)), 600);
    }
}
