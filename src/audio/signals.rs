//! Synthetic speech for the echo canceller's tests and the audio benchmarks: one generator, so
//! that every figure and test speaks the same "voice". Not used by the daemon itself.

/// Speech-like audio at 48 kHz: white noise from a seeded xorshift, low-passed for a voice-like
/// spectral tilt, shaped by a 3 Hz syllable envelope; with `pauses`, phrases of 1.6 s with 0.4 s
/// of silence between them.
pub fn speech_like(n: usize, seed: u64, pauses: bool) -> Vec<i16> {
    let mut x = seed;
    let mut lp = 0.0f64;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let white = (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
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
