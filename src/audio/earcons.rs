//! The device's own short sounds: a rising chime when a conversation starts, a falling one when
//! it ends, a low double buzz on error. Generated once at start-up (no sound files to ship),
//! then mixed into playback sample by sample.

use crate::session::Earcon;

use super::SAMPLE_RATE;

/// Peak level of a chime: about -12 dBFS, audible over speech without startling.
const PEAK: f64 = 8_000.0;

/// One note: a sine with a 5 ms attack and an exponential decay, so it neither clicks nor drones.
fn note(out: &mut Vec<i16>, freq: f64, ms: u32, decay_per_s: f64) {
    let n = (SAMPLE_RATE / 1000 * ms) as usize;
    let attack = (SAMPLE_RATE / 1000 * 5) as f64;
    for i in 0..n {
        let t = i as f64 / f64::from(SAMPLE_RATE);
        let rise = (i as f64 / attack).min(1.0);
        // The last 5 ms fade to zero so the next note starts clean.
        let fall = ((n - i) as f64 / attack).min(1.0);
        let env = rise * fall * (-decay_per_s * t).exp();
        let harmonic = 0.25 * (2.0 * std::f64::consts::PI * 2.0 * freq * t).sin();
        let s = PEAK * env * ((2.0 * std::f64::consts::PI * freq * t).sin() + harmonic) / 1.25;
        out.push(s.round() as i16);
    }
}

pub struct Earcons {
    start: Vec<i16>,
    stop: Vec<i16>,
    error: Vec<i16>,
}

impl Default for Earcons {
    fn default() -> Self {
        let mut start = Vec::new();
        note(&mut start, 659.25, 90, 6.0); // E5
        note(&mut start, 987.77, 140, 8.0); // B5
        let mut stop = Vec::new();
        note(&mut stop, 987.77, 90, 6.0);
        note(&mut stop, 659.25, 140, 8.0);
        let mut error = Vec::new();
        note(&mut error, 311.13, 120, 2.0); // E♭4
        note(&mut error, 233.08, 180, 3.0); // B♭3
        Earcons { start, stop, error }
    }
}

impl Earcons {
    pub fn get(&self, earcon: Earcon) -> &[i16] {
        match earcon {
            Earcon::Start => &self.start,
            Earcon::Stop => &self.stop,
            Earcon::Error => &self.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earcons_are_short_distinct_and_click_free() {
        let e = Earcons::default();
        for (which, s) in [
            (Earcon::Start, e.get(Earcon::Start)),
            (Earcon::Stop, e.get(Earcon::Stop)),
            (Earcon::Error, e.get(Earcon::Error)),
        ] {
            let ms = s.len() * 1000 / 48_000;
            assert!((150..=320).contains(&ms), "{which:?} lasts {ms} ms");
            let peak = s.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
            assert!(peak > 3_000 && peak < 12_000, "{which:?} peak {peak}");
            // Starts and ends near zero: no click.
            assert!(
                s[0].abs() < 200 && s[s.len() - 1].abs() < 200,
                "{which:?} clicks"
            );
        }
        assert_ne!(e.get(Earcon::Start), e.get(Earcon::Stop));
    }
}
