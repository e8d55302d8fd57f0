//! Local barge-in: the user talking over the assistant, heard on the echo-cancelled microphone
//! before the service can say so (a network round trip plus its own detection later).
//!
//! Sans-IO: the capture thread feeds each 10 ms block's verdict (WebRTC's voice detector on
//! the cleaned block, and its level) while the assistant's audio is queued; a voice at least
//! `threshold` loud for `min` in a row fires once. A residual echo is what the canceller
//! leaves of our own voice: quieter than a person at the device and not judged a voice most of
//! the time, so the level and the duration together keep it from firing.

/// The detector's settings and its run of voiced blocks.
pub struct LocalVoice {
    /// Mean square a block must reach (from the threshold in dBFS).
    min_mean_square: f64,
    min_blocks: u32,
    run: u32,
    /// Blocks since the stream began at the run's first voiced block.
    run_start: u64,
    fired: bool,
    /// The last blocks' mean squares, by block index: where the voice really began is found
    /// by looking back from the first block the detector called a voice (words start soft).
    history: [f64; HISTORY],
}

/// Blocks looked back over for the onset: 150 ms.
const HISTORY: usize = 16;

/// One firing: where in the microphone stream the voice began, in blocks of 10 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub onset_block: u64,
}

impl LocalVoice {
    pub fn new(threshold_dbfs: f64, min_ms: u32) -> Self {
        let amplitude = 32768.0 * 10f64.powf(threshold_dbfs / 20.0);
        LocalVoice {
            min_mean_square: amplitude * amplitude,
            min_blocks: (min_ms / 10).max(1),
            run: 0,
            run_start: 0,
            fired: false,
            history: [0.0; HISTORY],
        }
    }

    /// One block: `armed` while the assistant's audio is queued, `voiced` by the detector,
    /// `block` its samples, `index` its place in the stream. Fires at most once per armed
    /// stretch.
    pub fn block(&mut self, armed: bool, voiced: bool, block: &[i16], index: u64) -> Option<Fired> {
        if !armed {
            self.run = 0;
            self.fired = false;
            return None;
        }
        if self.fired {
            return None;
        }
        let energy = mean_square(block);
        self.history[index as usize % HISTORY] = energy;
        if voiced && energy >= self.min_mean_square {
            if self.run == 0 {
                self.run_start = index;
            }
            self.run += 1;
        } else {
            // A quiet block between syllables costs the run two voiced ones rather than all.
            self.run = self.run.saturating_sub(self.run.min(2));
        }
        if self.run >= self.min_blocks {
            self.fired = true;
            return Some(Fired {
                onset_block: self.onset(index),
            });
        }
        None
    }

    /// The run's first voiced block, moved back over the blocks before it that were already
    /// within 10 dB of it: the soft start of the word.
    fn onset(&self, now: u64) -> u64 {
        let first = self.history[self.run_start as usize % HISTORY];
        let oldest = now.saturating_sub(HISTORY as u64 - 1);
        let mut onset = self.run_start;
        while onset > oldest && self.history[(onset - 1) as usize % HISTORY] >= first / 10.0 {
            onset -= 1;
        }
        onset
    }
}

fn mean_square(block: &[i16]) -> f64 {
    if block.is_empty() {
        return 0.0;
    }
    let sum: f64 = block.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    sum / block.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOUD: [i16; 480] = [3000; 480];
    const SOFT: [i16; 480] = [100; 480];

    #[test]
    fn a_voice_loud_and_long_enough_fires_once_while_armed() {
        let mut v = LocalVoice::new(-40.0, 100);
        for i in 0..9 {
            assert_eq!(v.block(true, true, &LOUD, 50 + i), None);
        }
        assert_eq!(
            v.block(true, true, &LOUD, 59),
            Some(Fired { onset_block: 50 })
        );
        assert_eq!(v.block(true, true, &LOUD, 60), None, "once");
        // Disarmed (the speaker went quiet) and armed again: a new run may fire.
        v.block(false, false, &SOFT, 61);
        for i in 0..9 {
            assert_eq!(v.block(true, true, &LOUD, 70 + i), None);
        }
        assert!(v.block(true, true, &LOUD, 79).is_some());
    }

    #[test]
    fn the_onset_is_where_the_word_began_not_where_the_detector_first_said_so() {
        let mut v = LocalVoice::new(-40.0, 100);
        const RISING: [i16; 480] = [1500; 480]; // 6 dB under LOUD: the soft start
        for i in 0..20 {
            assert_eq!(v.block(true, false, &SOFT, i), None);
        }
        // Three soft-start blocks the detector does not call a voice yet, then the voice.
        for i in 20..23 {
            assert_eq!(v.block(true, false, &RISING, i), None);
        }
        let mut fired = None;
        for i in 23..40 {
            fired = fired.or(v.block(true, true, &LOUD, i));
        }
        assert_eq!(fired, Some(Fired { onset_block: 20 }));
    }

    #[test]
    fn quiet_voices_short_sounds_and_unvoiced_noise_do_not_fire() {
        let mut v = LocalVoice::new(-40.0, 100);
        for i in 0..100 {
            // A residual echo judged a voice, but quiet.
            assert_eq!(v.block(true, true, &SOFT, i), None);
            // Loud but not a voice.
            assert_eq!(v.block(true, false, &LOUD, i), None);
        }
        // Loud voice bursts of 50 ms with gaps: never 100 ms in a row.
        for burst in 0..20u64 {
            for i in 0..5 {
                assert_eq!(v.block(true, true, &LOUD, burst * 10 + i), None);
            }
            for i in 5..10 {
                assert_eq!(v.block(true, false, &SOFT, burst * 10 + i), None);
            }
        }
        // Armed off: nothing at all.
        for i in 0..20 {
            assert_eq!(v.block(false, true, &LOUD, i), None);
        }
    }
}
