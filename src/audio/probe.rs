//! The audio self-check's sounds and its reading of what came back (sans-IO).
//!
//! `TestSpeaker` plays [`test_tone`]. `CheckEcho` plays [`chirp`] while the capture thread
//! records three streams side by side, block for block: what playback wrote (the far end, as
//! the canceller is given it), the raw microphone, and the microphone after the canceller.
//! [`analyse`] turns them into an [`EchoReport`]: the delay between the speaker and the
//! microphone, how loud the echo is, and how much of it the canceller removes.

use super::SAMPLE_RATE;

/// Peak level of the test sounds: about -12 dBFS before the volume, like the earcons.
const PEAK: f64 = 8_000.0;
/// The test tone: an A (440 Hz) for one second, faded in and out so that it does not click.
pub const TONE_MS: u32 = 1_000;
/// The chirp: sweeps between 200 Hz and 4 kHz (speech's band), four in a row so that the canceller
/// has time to converge before its effect is measured.
pub const SWEEP_MS: u32 = 500;
pub const SWEEPS: u32 = 4;
/// How long the microphone is recorded: the chirp and a tail for the delay and the room.
pub const RECORD_MS: u32 = SWEEP_MS * SWEEPS + 1000;
/// Longest speaker-to-microphone delay looked for: short of a sweep pair, whose up and down
/// sweeps tell one echo from the next. The canceller covers about half a second.
pub const MAX_DELAY_MS: u32 = 900;
/// Longer than this, the canceller cannot follow.
const CANCELLER_REACH_MS: f64 = 500.0;

fn samples(ms: u32) -> usize {
    (SAMPLE_RATE / 1000 * ms) as usize
}

/// A 5 ms fade at both ends of a sound `n` samples long.
fn fade(i: usize, n: usize) -> f64 {
    let ramp = samples(5) as f64;
    (i as f64 / ramp).min(1.0) * ((n - i) as f64 / ramp).min(1.0)
}

pub fn test_tone() -> Vec<i16> {
    let n = samples(TONE_MS);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let s = PEAK * fade(i, n) * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
            s.round() as i16
        })
        .collect()
}

pub fn chirp() -> Vec<i16> {
    let n = samples(SWEEP_MS);
    let (f0, f1) = (200.0f64, 4_000.0f64);
    let len = f64::from(SWEEP_MS) / 1000.0;
    let k = (f1 / f0).ln();
    let one: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            // Exponential sweep: equal time per octave, as a room's response is read.
            let phase = 2.0 * std::f64::consts::PI * f0 * len / k * ((t * k / len).exp() - 1.0);
            (PEAK * fade(i, n) * phase.sin()).round() as i16
        })
        .collect();
    // Up, down, up, down: a sweep's echo is then never mistaken for the next sweep's, so a
    // delay up to a whole sweep is read without doubt.
    let down: Vec<i16> = one.iter().rev().copied().collect();
    (0..SWEEPS)
        .flat_map(|i| if i % 2 == 0 { &one } else { &down }.iter().copied())
        .collect()
}

/// What the capture thread recorded during the check, all three the same length.
#[derive(Debug, Default, Clone)]
pub struct Recording {
    pub far: Vec<i16>,
    pub raw: Vec<i16>,
    pub clean: Vec<i16>,
    /// Whether the canceller ran (it is off when `audio.echo_cancellation` is).
    pub cancelled: bool,
}

impl Recording {
    pub fn with_capacity(n: usize) -> Self {
        Recording {
            far: Vec::with_capacity(n),
            raw: Vec::with_capacity(n),
            clean: Vec::with_capacity(n),
            cancelled: false,
        }
    }

    /// Appends one block of each; returns whether the recording is full.
    pub fn push(&mut self, far: &[i16], raw: &[i16], clean: &[i16]) -> bool {
        let room = self.far.capacity() - self.far.len();
        let n = far.len().min(raw.len()).min(clean.len()).min(room);
        self.far.extend_from_slice(&far[..n]);
        self.raw.extend_from_slice(&raw[..n]);
        self.clean.extend_from_slice(&clean[..n]);
        self.far.len() == self.far.capacity()
    }
}

/// What `CheckEcho` found.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoReport {
    /// From the speaker's reference to the microphone hearing it, when the echo was found.
    pub delay_ms: Option<f64>,
    /// How loud the chirp was as played (after the volume).
    pub played_dbfs: f64,
    /// How loud its echo was in the microphone.
    pub echo_dbfs: f64,
    /// How much of the echo the canceller removed, once settled (absent without a canceller
    /// or without an echo to remove).
    pub removed_db: Option<f64>,
    /// Whether the microphone clipped while the chirp played.
    pub clipped: bool,
    /// One sentence for a person: fine, or what to do.
    pub verdict: String,
    /// Whether the result is fine.
    pub ok: bool,
}

impl EchoReport {
    /// The one log line (and the command line's summary).
    pub fn line(&self) -> String {
        let delay = self
            .delay_ms
            .map_or("not found".to_owned(), |d| format!("{d:.1} ms"));
        let removed = self
            .removed_db
            .map_or("n/a".to_owned(), |r| format!("{r:.1} dB"));
        format!(
            "echo check: speaker-to-microphone delay {delay}, played at {:.1} dBFS, echo at {:.1} dBFS, canceller removes {removed}: {}",
            self.played_dbfs, self.echo_dbfs, self.verdict
        )
    }
}

fn dbfs(mean_square: f64) -> f64 {
    10.0 * (mean_square.max(1e-3) / (32768.0 * 32768.0)).log10()
}

fn mean_square(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    s.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / s.len() as f64
}

/// Averages `factor` samples at a time: a cheap low-pass and decimation, enough for finding a
/// delay (the chirp stays below the new Nyquist frequency).
fn decimate(s: &[i16], factor: usize) -> Vec<f64> {
    s.chunks_exact(factor)
        .map(|c| c.iter().map(|&x| f64::from(x)).sum::<f64>() / factor as f64)
        .collect()
}

/// The lag (in samples of `far`'s rate, after decimation) where `mic` best matches `far`, and
/// how well (normalised correlation, 0–1).
fn best_lag(far: &[f64], mic: &[f64], max_lag: usize) -> Option<(usize, f64)> {
    let n = far.len();
    let far_energy: f64 = far.iter().map(|x| x * x).sum();
    if far_energy <= 0.0 || mic.len() < n {
        return None;
    }
    // The microphone's energy under the window, slid along rather than summed again.
    let mut mic_energy: f64 = mic[..n].iter().map(|x| x * x).sum();
    let mut best: Option<(usize, f64)> = None;
    for lag in 0..=max_lag.min(mic.len() - n) {
        if lag > 0 {
            mic_energy += mic[lag + n - 1].powi(2) - mic[lag - 1].powi(2);
        }
        if mic_energy <= 1e-9 {
            continue;
        }
        let dot: f64 = far.iter().zip(&mic[lag..lag + n]).map(|(a, b)| a * b).sum();
        let score = dot.abs() / (far_energy * mic_energy).sqrt();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((lag, score));
        }
    }
    best
}

/// Reads a recording: where the echo is, how loud, and what the canceller made of it.
pub fn analyse(rec: &Recording) -> EchoReport {
    const FACTOR: usize = 4;
    let rate = f64::from(SAMPLE_RATE) / FACTOR as f64;
    let far = decimate(&rec.far, FACTOR);
    let raw = decimate(&rec.raw, FACTOR);
    // The first sweep to reach the reference, as the probe: its echo lies after it.
    let start = far.iter().position(|x| x.abs() > 100.0).unwrap_or(0);
    let probe_len = (rate * f64::from(SWEEP_MS) / 1000.0) as usize;
    let probe = far.get(start..start + probe_len).unwrap_or(&[]);
    let max_lag = (rate * f64::from(MAX_DELAY_MS) / 1000.0) as usize;
    let found = best_lag(probe, raw.get(start..).unwrap_or(&[]), max_lag);

    let played: Vec<i16> = rec.far.iter().copied().filter(|&x| x != 0).collect();
    let played_ms = mean_square(&played);
    let played_dbfs = dbfs(played_ms);
    let clipped = rec.raw.iter().any(|&x| x.unsigned_abs() >= 32_000);
    let full = |d: usize| d * FACTOR;

    // Correlation below this is noise, not the chirp coming back.
    let echo = found.filter(|&(_, score)| score >= 0.3);
    let Some((lag, _)) = echo else {
        let echo_dbfs = dbfs(mean_square(&rec.raw));
        let (verdict, ok) = if played.is_empty() {
            (
                "nothing was played: is the speaker device working?".to_owned(),
                false,
            )
        } else {
            // What came closest, for whoever looks into it.
            let closest = found.map_or(String::new(), |(lag, score)| {
                format!(
                    " (closest match {score:.2} at {:.0} ms)",
                    lag as f64 * 1000.0 / rate
                )
            });
            (
                format!(
                    "the microphone did not hear the speaker within {MAX_DELAY_MS} ms{closest}: check that both are connected, the volume is up and the microphone is not muted"
                ),
                false,
            )
        };
        return EchoReport {
            delay_ms: None,
            played_dbfs,
            echo_dbfs,
            removed_db: None,
            clipped,
            verdict,
            ok,
        };
    };
    let delay_ms = (lag as f64) * 1000.0 / rate;
    // The echo: the raw microphone over the chirp's span, shifted by the delay.
    let first = full(start + lag);
    let chirp_len = samples(SWEEP_MS * SWEEPS);
    let span = |s: &[i16], from: usize, len: usize| -> f64 {
        let end = (from + len).min(s.len());
        mean_square(s.get(from.min(end)..end).unwrap_or(&[]))
    };
    let echo_ms = span(&rec.raw, first, chirp_len);
    let echo_dbfs = dbfs(echo_ms);
    // The canceller's effect once settled: the last two sweeps.
    let removed_db = rec.cancelled.then(|| {
        let settled = first + samples(SWEEP_MS * (SWEEPS - 2));
        let len = samples(SWEEP_MS * 2);
        let before = span(&rec.raw, settled, len);
        let after = span(&rec.clean, settled, len);
        10.0 * (before.max(1.0) / after.max(1.0)).log10()
    });
    let (verdict, ok) = if clipped {
        (
            "the microphone clips while the speaker plays: lower the volume or the microphone's gain (alsamixer)".to_owned(),
            false,
        )
    } else if delay_ms > CANCELLER_REACH_MS {
        (
            format!(
                "the microphone hears the speaker {delay_ms:.0} ms late, more than the canceller can follow: use devices with shorter buffers (a `hw:` or `plughw:` device rather than a sound server)"
            ),
            false,
        )
    } else if !rec.cancelled {
        (
            "echo cancellation is off (audio.echo_cancellation): the assistant will hear itself"
                .to_owned(),
            false,
        )
    } else if removed_db.is_some_and(|r| r < 10.0) {
        (
            "the canceller removes less than 10 dB: the assistant may hear itself; move the microphone away from the speaker or lower the volume".to_owned(),
            false,
        )
    } else {
        ("fine".to_owned(), true)
    };
    EchoReport {
        delay_ms: Some(delay_ms),
        played_dbfs,
        echo_dbfs,
        removed_db,
        clipped,
        verdict,
        ok,
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
