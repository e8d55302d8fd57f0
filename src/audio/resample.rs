//! 2:1 conversion between the WebSocket's 24 kHz PCM and the engine's 48 kHz, with a
//! windowed-sinc half-band low-pass. Streaming (keeps its history between calls) and
//! allocation-free: callers pass the output slice.

/// Taps of the low-pass; odd, so that the filter is symmetric around a centre tap.
const TAPS: usize = 31;

fn kernel() -> [f32; TAPS] {
    let mut k = [0f32; TAPS];
    let mid = (TAPS / 2) as f64;
    let mut sum = 0.0;
    for (i, tap) in k.iter_mut().enumerate() {
        let x = i as f64 - mid;
        // Cut-off at a quarter of the 48 kHz rate (12 kHz, the 24 kHz Nyquist).
        let sinc = if x == 0.0 {
            0.5
        } else {
            (std::f64::consts::PI * x * 0.5).sin() / (std::f64::consts::PI * x)
        };
        let window =
            0.54 - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (TAPS - 1) as f64).cos();
        *tap = (sinc * window) as f32;
        sum += sinc * window;
    }
    for tap in &mut k {
        *tap /= sum as f32;
    }
    k
}

fn saturate(x: f32) -> i16 {
    x.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// 48 kHz → 24 kHz.
pub struct Downsampler {
    kernel: [f32; TAPS],
    history: [f32; TAPS],
    pos: usize,
    phase: bool,
}

impl Default for Downsampler {
    fn default() -> Self {
        Downsampler {
            kernel: kernel(),
            history: [0.0; TAPS],
            pos: 0,
            phase: false,
        }
    }
}

impl Downsampler {
    /// Writes `input.len() / 2` samples (±1 across calls with odd lengths); returns the count.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        let mut n = 0;
        for &s in input {
            self.history[self.pos] = f32::from(s);
            self.pos = (self.pos + 1) % TAPS;
            self.phase = !self.phase;
            if self.phase && n < out.len() {
                let mut acc = 0.0;
                for (i, k) in self.kernel.iter().enumerate() {
                    acc += k * self.history[(self.pos + i) % TAPS];
                }
                out[n] = saturate(acc);
                n += 1;
            }
        }
        n
    }
}

/// 24 kHz → 48 kHz.
pub struct Upsampler {
    kernel: [f32; TAPS],
    history: [f32; TAPS],
    pos: usize,
}

impl Default for Upsampler {
    fn default() -> Self {
        Upsampler {
            kernel: kernel(),
            history: [0.0; TAPS],
            pos: 0,
        }
    }
}

impl Upsampler {
    /// Writes `2 * input.len()` samples (bounded by `out`); returns the count.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        let mut n = 0;
        for &s in input {
            // Zero-stuffing halves the level; the filter's gain of 2 restores it.
            for value in [f32::from(s) * 2.0, 0.0] {
                self.history[self.pos] = value;
                self.pos = (self.pos + 1) % TAPS;
                if n < out.len() {
                    let mut acc = 0.0;
                    for (i, k) in self.kernel.iter().enumerate() {
                        acc += k * self.history[(self.pos + i) % TAPS];
                    }
                    out[n] = saturate(acc);
                    n += 1;
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::signals::rms;

    fn sine(rate: f64, freq: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (10_000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn passband_tone_survives_both_ways() {
        let input = sine(48_000.0, 1000.0, 4800);
        let mut down = Downsampler::default();
        let mut mid = vec![0i16; 2400];
        // Feed in odd-sized chunks to exercise the streaming state.
        let mut n = 0;
        for chunk in input.chunks(317) {
            n += down.process(chunk, &mut mid[n..]);
        }
        assert_eq!(n, 2400);
        let mut up = Upsampler::default();
        let mut back = vec![0i16; 4800];
        let m = up.process(&mid, &mut back);
        assert_eq!(m, 4800);
        let ratio = rms(&back[200..]) / rms(&input[200..]);
        assert!((0.9..1.1).contains(&ratio), "level ratio {ratio}");
    }

    #[test]
    fn stopband_tone_is_removed_when_downsampling() {
        // 18 kHz cannot exist at 24 kHz; it must not alias into the audible band.
        let input = sine(48_000.0, 18_000.0, 4800);
        let mut out = vec![0i16; 2400];
        Downsampler::default().process(&input, &mut out);
        let ratio = rms(&out[100..]) / rms(&input);
        assert!(ratio < 0.1, "stopband leak {ratio}");
    }
}
