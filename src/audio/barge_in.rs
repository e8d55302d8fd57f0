//! Local barge-in: the user talking over the assistant, heard on the echo-cancelled microphone
//! before the service can say so (a network round trip plus its own detection later).
//!
//! Sans-IO: the capture thread feeds each 10 ms block while the assistant's audio is in the
//! speaker: the cleaned microphone, what the speaker was given alongside (the far end), and
//! WebRTC's voice detector's verdict. A block is the user's when it is loud enough and well
//! above what the canceller leaves of our own voice (the residual echo). That residual is
//! learned as we go, as a share of the far end's level, and assumed as loud as the far end
//! until learned. It is learned only where the far end has played throughout the last
//! `FAR_WINDOW` blocks, so that the echo must be in the microphone (it arrives tens of ms after
//! its reference: a syllable's first blocks and the blocks after it are no measure of the
//! canceller). Two shares are kept and the larger judges: what the canceller usually leaves,
//! tracked low (it falls at once with the canceller converging and rises slowly), and the most
//! it let through lately, which fades by 5 dB a second. The second is there because a
//! canceller that silences the echo entirely for a while (its suppressor gating it) can leak
//! 20 dB of it a moment later, at a new syllable or while it adapts. Words that start unvoiced
//! (`s`, `t`, `f`) count from their first sound if they stand far enough above it; voiced
//! blocks need less. `min` of such blocks in a row fires once.

/// How far above the residual echo a voiced block must be (15 dB), and any block (30 dB):
/// under a loaded CPU the residual jumps now and then, and 10/20 dB let one through a minute.
const VOICED_MARGIN: f64 = 31.6;
const ANY_MARGIN: f64 = 1000.0;
/// The far end's level is held and decays by 2 dB per block: the echo arrives tens of ms after
/// its reference and rings on in a room.
const FAR_DECAY: f64 = 0.63;
/// The residual ratio rises by 3 dB a second when the cleaned microphone is above it (so that
/// it follows a changed room), and moves a tenth of the way down (in dB) when below.
const RISE_PER_BLOCK: f64 = 1.0069;
const FALL_SHARE: f64 = 0.1;
/// A far end below -60 dBFS (as a mean square) teaches nothing about the residual.
const FAR_FLOOR: f64 = 1073.7;
/// The blocks an echo may lag its reference by (here 40-50 ms through PulseAudio; a card with
/// larger buffers, or a room, adds more): 120 ms.
const FAR_WINDOW: usize = 12;
/// After the far end is realigned, the microphone blocks already recorded hold the echo of
/// far end that was skipped (one per block skipped), and the echo of the rest lags by up to
/// `FAR_WINDOW`: neither can be judged against the far end now beside them, so no block counts
/// as the user's until they have passed. A user talking then is heard that much later.
const fn deaf_after_realign(skipped_blocks: u32) -> u64 {
    FAR_WINDOW as u64 + skipped_blocks as u64
}
/// The most the canceller let through lately fades by 0.05 dB a block (5 dB a second).
const LEAK_FADE: f64 = 0.98855;
/// Shares are kept above -120 dB: digital silence is a ratio of zero.
const MIN_SHARE: f64 = 1e-12;

/// The detector's settings and its run of the user's blocks.
pub struct LocalVoice {
    /// Mean square a block must reach (from the threshold in dBFS).
    min_mean_square: f64,
    min_blocks: u32,
    run: u32,
    /// Blocks not the user's since the run's last one.
    gap: u32,
    /// Blocks since the stream began at the run's first block.
    run_start: u64,
    fired: bool,
    /// The last blocks' mean squares, by block index: where the voice really began is found
    /// by looking back from the run's first block (words start soft).
    history: [f64; HISTORY],
    /// The far end's recent level (mean square, held).
    far_level: f64,
    /// The far end's mean squares over the last `FAR_WINDOW` blocks that had one.
    far_window: [f64; FAR_WINDOW],
    /// Blocks with a far end seen (where the next one goes in `far_window`).
    far_seen: u64,
    /// The residual echo as a share of the far end, tracked low (1.0 until the canceller is
    /// seen working).
    residual: f64,
    /// The largest share the canceller let through lately (fading).
    leak: f64,
    /// Blocks still to come that cannot be the user's (after a realignment). A count, not an
    /// index: a reopened stream counts its blocks from 0 again.
    deaf: u64,
}

/// Quiet blocks a run survives.
const MAX_GAP_BLOCKS: u32 = 2;

/// Blocks looked back over for the onset: 150 ms.
const HISTORY: usize = 16;

/// One firing: where in the microphone stream the voice began, in blocks of 10 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub onset_block: u64,
}

/// One 10 ms block as the capture thread sees it.
pub struct Block<'a> {
    /// The assistant's audio is in the speaker (and not already hushed).
    pub armed: bool,
    /// WebRTC's voice detector called the cleaned block a voice.
    pub voiced: bool,
    /// The cleaned microphone.
    pub near: &'a [i16],
    /// What the speaker was given alongside.
    pub far: &'a [i16],
    /// Set when the far end was realigned before this block (skipped, or moved by an xrun), so
    /// that what was learned may be off: the blocks of far end skipped (0 for an xrun).
    pub realigned: Option<u32>,
    /// Playback has not yet handed over the far end for this block.
    pub far_missing: bool,
    /// Its place in the stream.
    pub index: u64,
}

impl LocalVoice {
    pub fn new(threshold_dbfs: f64, min_ms: u32) -> Self {
        let amplitude = 32768.0 * 10f64.powf(threshold_dbfs / 20.0);
        LocalVoice {
            min_mean_square: amplitude * amplitude,
            min_blocks: (min_ms / 10).max(1),
            run: 0,
            gap: 0,
            run_start: 0,
            fired: false,
            history: [0.0; HISTORY],
            far_level: 0.0,
            far_window: [0.0; FAR_WINDOW],
            far_seen: 0,
            residual: 1.0,
            leak: MIN_SHARE,
            deaf: 0,
        }
    }

    /// One block. Fires at most once per armed stretch. The residual is learned whenever
    /// the far end plays, armed or not.
    pub fn block(&mut self, b: &Block<'_>) -> Option<Fired> {
        let energy = mean_square(b.near);
        if let Some(skipped_blocks) = b.realigned {
            self.residual = 1.0;
            self.leak = MIN_SHARE;
            self.deaf = deaf_after_realign(skipped_blocks);
        }
        let deaf = self.deaf > 0;
        self.deaf = self.deaf.saturating_sub(1);
        // No far end yet for this block (playback hands it over a period at a time, and may be
        // late): judge it against the level held so far, undecayed, and learn nothing from it.
        if !b.far_missing {
            let far = mean_square(b.far);
            self.far_level = far.max(self.far_level * FAR_DECAY);
            self.far_window[(self.far_seen % FAR_WINDOW as u64) as usize] = far;
            self.far_seen += 1;
        }
        let expected = self.far_level * self.share();
        // What is heard while deaf is taken for echo, and learned as such.
        let user = !deaf
            && energy >= self.min_mean_square
            && energy >= expected * if b.voiced { VOICED_MARGIN } else { ANY_MARGIN };
        if !b.far_missing {
            // The user's own blocks are no measure of the canceller.
            self.learn(energy, !user);
        }
        if !b.armed {
            self.run = 0;
            self.fired = false;
            return None;
        }
        if self.fired {
            return None;
        }
        self.history[b.index as usize % HISTORY] = energy;
        if user {
            if self.run == 0 {
                self.run_start = b.index;
            }
            self.run += 1;
            self.gap = 0;
        } else {
            // Up to 20 ms of quiet inside a word (the closure before a `t`, a `p`) holds the
            // run; longer ends it.
            self.gap += 1;
            if self.gap > MAX_GAP_BLOCKS {
                self.run = 0;
            }
        }
        if self.run >= self.min_blocks {
            self.fired = true;
            return Some(Fired {
                onset_block: self.onset(b.index),
            });
        }
        None
    }

    /// The residual echo the next block is judged against, as a share of the far end, in dB
    /// (for the log and the tests).
    pub fn residual_db(&self) -> f64 {
        10.0 * self.share().log10()
    }

    fn share(&self) -> f64 {
        self.residual.max(self.leak)
    }

    /// Learns from a block whose far end played throughout the window, against the window's
    /// loudest block; `leak` says whether the block may raise the share let through.
    fn learn(&mut self, energy: f64, leak: bool) {
        self.leak = (self.leak * LEAK_FADE).max(MIN_SHARE);
        // The window starts silent: nothing is learned before it has filled.
        let (quietest, loudest) = self
            .far_window
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if quietest < FAR_FLOOR {
            return;
        }
        let ratio = (energy / loudest).clamp(MIN_SHARE, 1.0);
        if leak {
            self.leak = self.leak.max(ratio);
        }
        self.residual = if ratio < self.residual {
            // A tenth of the way down, in dB.
            self.residual * (ratio / self.residual).powf(FALL_SHARE)
        } else {
            (self.residual * RISE_PER_BLOCK).min(1.0)
        };
    }

    /// The run's first block, moved back over the blocks before it that were already within
    /// 10 dB of it: the soft start of the word.
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
#[path = "barge_in_tests.rs"]
mod tests;
