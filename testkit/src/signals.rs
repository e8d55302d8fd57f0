//! Test signals (mono S16LE at 48 kHz) and what is measured on what comes back.

use std::path::Path;
use std::process::Command;

use realtime_voiced::audio::{Frame, FRAME_SAMPLES};

pub const RATE: f64 = 48_000.0;

/// The tone [`crate::link::play_tone_burst`] plays and [`analyse`] looks for.
pub const TONE_HZ: f64 = 440.0;

/// Samples in `ms` milliseconds.
pub fn ms(ms: usize) -> usize {
    ms * 48
}

pub fn silence(samples: usize) -> Vec<i16> {
    vec![0; samples]
}

/// A sine of `freq` Hz and peak `amplitude`, from phase 0.
pub fn tone(freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / RATE).sin()) as i16)
        .collect()
}

/// `samples` cut into 20 ms frames, the last padded with silence.
pub fn frames(samples: &[i16]) -> Vec<Frame> {
    samples
        .chunks(FRAME_SAMPLES)
        .map(|chunk| {
            let mut frame = [0i16; FRAME_SAMPLES];
            frame[..chunk.len()].copy_from_slice(chunk);
            frame
        })
        .collect()
}

/// What the benches say when they need spoken words (a spoken paragraph, about 12 s).
pub const PARAGRAPH: &str = "The kitchen light is on, the oven is warm, and the kettle has \
    just boiled. Tomorrow will be cloudy in the morning with some sun after lunch, and a light \
    wind from the west. Seven times eight is fifty six.";

/// Spoken words from espeak-ng, resampled by sox.
pub fn speech(dir: &Path, text: &str) -> Vec<i16> {
    let wav = dir.join("speech.wav");
    let raw = dir.join("speech.raw");
    let ok = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("run espeak-ng")
        .success();
    assert!(ok, "espeak-ng failed");
    let ok = Command::new("sox")
        .arg(&wav)
        .args([
            "-r",
            "48000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            "-t",
            "raw",
        ])
        .arg(&raw)
        .status()
        .expect("run sox")
        .success();
    assert!(ok, "sox failed");
    read_raw(&raw)
}

/// Raw S16LE samples from a file; none when it cannot be read.
pub fn read_raw(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

pub fn write_raw(path: &Path, samples: &[i16]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write raw");
}

/// RMS level; 0 for no samples.
pub fn rms(s: &[i16]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
}

/// Power of `freq` in `s` (Goertzel), normalised by length.
pub fn goertzel(s: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / RATE;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in s {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (s.len() as f64).powi(2)
}

/// Frequency from the count of zero crossings, both ways.
pub fn zero_crossing_hz(s: &[i16]) -> f64 {
    let crossings = s.windows(2).filter(|p| (p[0] < 0) != (p[1] < 0)).count();
    crossings as f64 / 2.0 / (s.len().max(1) as f64 / RATE)
}

/// Frequency from the span between the first and last rising zero crossings: exact for a
/// steady tone, whatever the window cuts off at either end.
pub fn rising_crossing_hz(s: &[i16]) -> f64 {
    let crossings: Vec<usize> = (1..s.len())
        .filter(|&i| s[i - 1] < 0 && s[i] >= 0)
        .collect();
    if crossings.len() < 2 {
        return 0.0;
    }
    let span = (crossings[crossings.len() - 1] - crossings[0]) as f64;
    RATE * (crossings.len() - 1) as f64 / span
}

/// What came back, judged: the loudest 400 ms window's frequency by zero crossings, how much
/// of its energy sits at 440 Hz against neighbouring frequencies, and how quiet the end is.
#[derive(Debug)]
pub struct ToneReport {
    pub seconds: f64,
    pub peak_rms: f64,
    pub zero_crossing_hz: f64,
    pub goertzel_ratio: f64,
    pub tail_rms: f64,
}

pub fn analyse(samples: &[i16]) -> ToneReport {
    let window = 48_000 * 4 / 10;
    let step = 960;
    let mut best = (0usize, 0.0f64);
    let mut start = 0;
    while start + window <= samples.len() {
        let r = rms(&samples[start..start + window]);
        if r > best.1 {
            best = (start, r);
        }
        start += step;
    }
    let loud = &samples[best.0..(best.0 + window).min(samples.len())];
    let at_tone = goertzel(loud, TONE_HZ);
    let elsewhere = [300.0, 600.0, 880.0, 1000.0]
        .iter()
        .map(|&f| goertzel(loud, f))
        .fold(f64::MIN_POSITIVE, f64::max);
    let tail = &samples[samples.len().saturating_sub(9600)..];
    ToneReport {
        seconds: samples.len() as f64 / RATE,
        peak_rms: best.1,
        zero_crossing_hz: zero_crossing_hz(loud),
        goertzel_ratio: at_tone / elsewhere,
        tail_rms: rms(tail),
    }
}
