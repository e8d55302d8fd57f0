//! Synthetic speech and noise for the audio tests and benchmarks: one generator, so that every
//! figure and test speaks the same "voice". Not used by the daemon itself.

/// Uniform white noise in [-1, 1) from a seeded xorshift (`seed` not 0).
fn white(seed: u64) -> impl Iterator<Item = f64> {
    let mut x = seed;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    })
}

/// `n` samples of white noise peaking at `peak`: sound that never repeats itself.
pub fn white_noise(n: usize, seed: u64, peak: f64) -> Vec<i16> {
    white(seed).take(n).map(|w| (peak * w) as i16).collect()
}

/// Speech-like audio at 48 kHz: white noise, low-passed for a voice-like spectral tilt, shaped
/// by a 3 Hz syllable envelope; with `pauses`, phrases of 1.6 s with 0.4 s of silence between
/// them.
pub fn speech_like(n: usize, seed: u64, pauses: bool) -> Vec<i16> {
    let mut lp = 0.0f64;
    white(seed)
        .take(n)
        .enumerate()
        .map(|(i, white)| {
            lp = 0.7 * lp + 0.3 * white;
            let t = i as f64 / 48_000.0;
            let syllable = (2.0 * std::f64::consts::PI * 3.0 * t).sin().max(0.0);
            let phrase = if !pauses || (t % 2.0) < 1.6 { 1.0 } else { 0.0 };
            (12_000.0 * lp * syllable * phrase) as i16
        })
        .collect()
}

/// Root mean square of `s` (0 for none).
pub fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}
