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
//!
//! Audio that arrives at the pace it plays (WebRTC) keeps whatever delay it has once playing: a
//! late packet that ran the buffer dry, or a burst, would add to the delay for the rest of the
//! answer. So when a paced source's queue stayed above the target for a whole second (its
//! lowest point plus one arrival: a queue dips by a packet between packets), the excess is
//! taken back: a quiet block (a pause between words) is dropped whole, and sound that has no
//! pause for a while (a long sentence, a tone) is shortened by whole pitch periods, joined with a
//! crossfade where the sound repeats itself, as a conferencing jitter buffer does ("accelerate"
//! in WebRTC's NetEQ): the tempo quickens for a moment (one pitch period, 15 ms at most, per
//! 40 ms played), the pitch is unchanged and no syllable is lost. Sound that does not repeat
//! (noise, a consonant) is never cut. Audio delivered ahead of time (WebSocket) is left whole.

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

impl JitterSettings {
    /// The defaults, with an answer starting after `ms` of it (`audio.jitter_buffer_ms`); the
    /// floor is never above that.
    pub fn with_prebuffer(ms: u32) -> Self {
        let d = JitterSettings::default();
        JitterSettings {
            start_ms: ms.min(d.max_ms),
            min_ms: d.min_ms.min(ms),
            ..d
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

/// How long the queue must stay above the target before its excess is taken for delay.
const SHED_WINDOW: usize = 1000 * SAMPLES_PER_MS;
/// A block whose loudest sample is under this (about -40 dBFS) may be dropped to cut delay.
const QUIET: i16 = 330;

/// Shortening sound: the crossfade that joins it to its repeat, the stretch compared with the
/// sound a lag later (most of a low voice's period, so a fraction of one cannot pass for it),
/// and the lags searched for the repeat (one or more pitch periods: 2.5–15 ms covers voices
/// from about 67 Hz up).
const FADE: usize = 5 * SAMPLES_PER_MS;
const MATCH: usize = 10 * SAMPLES_PER_MS;
const MIN_LAG: usize = 5 * SAMPLES_PER_MS / 2;
const MAX_LAG: usize = 15 * SAMPLES_PER_MS;
/// The search reads this far ahead.
const AHEAD: usize = MATCH + MAX_LAG;
/// The lag is searched on the sound decimated by this much (12 kHz), then refined around the
/// best at the full rate: a fiftieth of the work of a full search.
const DECIMATE: usize = 4;
// The coarse search's last window ends exactly at the end of the decimated copy.
const _: () = assert!(MAX_LAG % DECIMATE == 0 && MATCH % DECIMATE == 0);
/// How alike (normalized correlation) the sound and its repeat must be to be joined.
const ALIKE: f32 = 0.9;
/// Sound played between two shortenings: with 10 ms periods, one shortening per 40 ms played.
const SHORTEN_EVERY: usize = 30 * SAMPLES_PER_MS;
/// Sound played after a search that found no repeat before the next one.
const RETRY_AFTER: usize = 20 * SAMPLES_PER_MS;
/// How long a pause is waited for before sound is shortened: dropping a quiet block is
/// inaudible, and speech pauses every few hundred ms.
const PAUSE_WAIT: usize = 300 * SAMPLES_PER_MS;
/// What is not taken back within this long is let go (the sound neither paused nor repeated),
/// and the queue measured afresh.
const SHED_GIVE_UP: usize = 2 * SHED_WINDOW;

pub struct JitterBuffer {
    consumer: Consumer<i16>,
    settings: JitterSettings,
    state: State,
    target: usize,
    calm: usize,
    underruns: u64,
    /// The source arrives at the pace it plays (see the module's comment).
    paced: bool,
    /// The lowest the queue fell to since `window` began, and samples played since then.
    low: usize,
    window: usize,
    /// What was queued after the last read in this window, and the most that arrived between
    /// two reads since `window` began (a packet, or a few at once).
    after_read: Option<usize>,
    rise: usize,
    /// Excess delay still to drop, in quiet blocks or by shortening sound.
    shed: usize,
    shed_total: u64,
    /// Played since `shed` was set ([`SHED_GIVE_UP`]), and since then or the last quiet block
    /// dropped ([`PAUSE_WAIT`]).
    shedding: usize,
    since_pause: usize,
    /// Sound played since the last shortening.
    since_shortened: usize,
    /// Scratch for shortening, allocated once: the sound ahead, and the same decimated.
    ahead: Box<[f32; AHEAD]>,
    decimated: Box<[f32; AHEAD / DECIMATE]>,
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
        paced: false,
        low: usize::MAX,
        window: 0,
        after_read: None,
        rise: 0,
        shed: 0,
        shed_total: 0,
        shedding: 0,
        since_pause: 0,
        since_shortened: SHORTEN_EVERY,
        ahead: Box::new([0.0; AHEAD]),
        decimated: Box::new([0.0; AHEAD / DECIMATE]),
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
            self.restart_window();
        }
        let dropped = self.shed >= out.len() && self.drop_if_quiet(out.len());
        let shortened =
            !dropped && self.shed >= MIN_LAG && self.since_pause >= PAUSE_WAIT && self.shorten(out);
        let n = if shortened {
            self.since_shortened = 0;
            out.len()
        } else {
            self.since_shortened = self.since_shortened.saturating_add(out.len());
            self.read(out)
        };
        if self.shed > 0 {
            self.shedding += out.len();
            self.since_pause = if dropped {
                0
            } else {
                self.since_pause + out.len()
            };
            if self.shedding >= SHED_GIVE_UP {
                self.restart_window();
            }
        }
        self.watch_delay(avail, out.len());
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

    /// Tells whether the audio pushed from now on arrives at the pace it plays.
    pub fn set_paced(&mut self, paced: bool) {
        if paced != self.paced {
            self.paced = paced;
            self.restart_window();
        }
    }

    fn restart_window(&mut self) {
        self.low = usize::MAX;
        self.window = 0;
        self.after_read = None;
        self.rise = 0;
        self.shed = 0;
        self.shedding = 0;
        self.since_pause = 0;
    }

    /// After each read while playing (`before` was queued as the fill began): the target is
    /// what is queued as a packet arrives, and the queue falls by up to a packet before the
    /// next one. A paced queue whose lowest point, plus the biggest arrival, stayed above the
    /// target for a whole window holds that much more than the network needs. (Counted in
    /// the queue alone: a device's buffer holds the same whatever the queue does.)
    fn watch_delay(&mut self, before: usize, played: usize) {
        if !self.paced || self.shed > 0 {
            return;
        }
        let now = self.consumer.slots();
        if let Some(after_read) = self.after_read {
            self.rise = self.rise.max(before.saturating_sub(after_read));
        }
        self.after_read = Some(now);
        self.low = self.low.min(now);
        self.window += played;
        if self.window >= SHED_WINDOW {
            let excess = (self.low + self.rise).saturating_sub(self.target);
            self.restart_window();
            if excess >= played {
                self.shed = excess;
            }
        }
    }

    /// Drops the next `n` samples if they are quiet (and keeps at least a block queued).
    fn drop_if_quiet(&mut self, n: usize) -> bool {
        if self.consumer.slots() < 2 * n {
            return false;
        }
        let Ok(chunk) = self.consumer.read_chunk(n) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        let quiet = a
            .iter()
            .chain(b)
            .all(|s| s.unsigned_abs() < QUIET.unsigned_abs());
        if quiet {
            chunk.commit_all();
            self.cut(n);
        }
        quiet
    }

    /// Counts `n` samples of excess taken back; what is left is too little to cut again.
    fn cut(&mut self, n: usize) {
        self.shed = self.shed.saturating_sub(n);
        self.shed_total += n as u64;
        if self.shed < MIN_LAG {
            self.restart_window();
        }
    }

    /// Fills `out` from the sound ahead less one repeat of it (a lag of up to the excess),
    /// crossfaded over [`FADE`] where the sound and its repeat are alike. False, with nothing
    /// read, where the sound does not repeat within the excess or too little is queued.
    fn shorten(&mut self, out: &mut [i16]) -> bool {
        let n = out.len();
        if n < FADE
            || self.since_shortened < SHORTEN_EVERY
            || self.consumer.slots() < (2 * n + MAX_LAG).max(AHEAD)
        {
            return false;
        }
        let Ok(chunk) = self.consumer.read_chunk(AHEAD) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        for (dst, &src) in self.ahead.iter_mut().zip(a.iter().chain(b)) {
            *dst = f32::from(src);
        }
        // The best repeat over the whole range: one longer than the excess is not cut short
        // to fit, since a fraction of a period does not join cleanly.
        let found = find_repeat(&self.ahead, &mut self.decimated);
        let lag = match found {
            Some(lag) if lag <= self.shed => lag,
            _ => {
                // Nothing read (a chunk left uncommitted stays queued), and no search again for
                // a while. An excess shorter than both the sound's repeat and a block can be
                // taken neither way: it is let go.
                self.since_shortened = SHORTEN_EVERY - RETRY_AFTER;
                if found.is_some() && self.shed < n {
                    self.restart_window();
                }
                return false;
            }
        };
        for (i, o) in out[..FADE].iter_mut().enumerate() {
            let w = (i as f32 + 0.5) / FADE as f32;
            let joined = self.ahead[i] * (1.0 - w) + self.ahead[i + lag] * w;
            *o = joined.round().clamp(-32768.0, 32767.0) as i16;
        }
        chunk.commit(FADE + lag);
        let rest = self.read(&mut out[FADE..]);
        out[FADE + rest..].fill(0);
        self.cut(lag);
        true
    }

    /// Samples of delay taken back (quiet blocks dropped, sound shortened), since the start.
    pub fn shed_samples(&self) -> u64 {
        self.shed_total
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

/// The lag in `MIN_LAG..=MAX_LAG` at which `ahead` best repeats its first [`MATCH`]
/// samples, if the two are alike. `decimated` is scratch.
fn find_repeat(ahead: &[f32; AHEAD], decimated: &mut [f32; AHEAD / DECIMATE]) -> Option<usize> {
    // Coarse: sums of DECIMATE samples (a crude low-pass, enough to find a pitch period).
    for (dst, src) in decimated.iter_mut().zip(ahead.chunks_exact(DECIMATE)) {
        *dst = src.iter().sum();
    }
    let span = MATCH / DECIMATE;
    let coarse = (MIN_LAG / DECIMATE..=MAX_LAG / DECIMATE)
        .map(|lag| (lag, alike(&decimated[..span], &decimated[lag..lag + span])))
        .max_by(|x, y| x.1.total_cmp(&y.1))?
        .0;
    // Fine: every lag within one coarse step of it, at the full rate.
    let lo = (coarse * DECIMATE).saturating_sub(DECIMATE).max(MIN_LAG);
    let hi = (coarse * DECIMATE + DECIMATE).min(MAX_LAG);
    let (lag, score) = (lo..=hi)
        .map(|lag| (lag, alike(&ahead[..MATCH], &ahead[lag..lag + MATCH])))
        .max_by(|x, y| x.1.total_cmp(&y.1))?;
    (score >= ALIKE).then_some(lag)
}

/// Normalized correlation of two equal runs of samples (1.0: the same shape and sign).
fn alike(x: &[f32], y: &[f32]) -> f32 {
    let (mut xy, mut xx, mut yy) = (0.0f32, 0.0f32, 0.0f32);
    for (&a, &b) in x.iter().zip(y) {
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx <= 0.0 || yy <= 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
