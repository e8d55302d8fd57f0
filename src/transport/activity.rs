//! When the service's audio starts and stops, for an API that does not say (GPT-Live): told
//! from the audio itself, by its level.
//!
//! The receiving side calls [`AudioActivity::heard`] with each piece of assistant audio (a
//! decoded 20 ms frame, or a WebSocket delta); the link's loop calls
//! [`AudioActivity::quiet`] every [`CHECK_EVERY`]. Atomics only: the receiving task and the
//! link's loop share it without a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// RMS above which audio counts as the assistant talking (about -54 dBFS): comfort noise and
/// silence frames stay below it.
const LOUD_RMS: u64 = 64;
/// Quiet this long ends the assistant's turn. Longer than a pause between sentences of a
/// model streaming in real time, short enough that the LED follows the voice.
pub const QUIET_GAP: Duration = Duration::from_millis(600);
/// How often the link's loop checks for [`QUIET_GAP`].
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

pub struct AudioActivity {
    epoch: Instant,
    talking: AtomicBool,
    /// Milliseconds since `epoch` of the last loud audio.
    last_loud_ms: AtomicU64,
}

impl Default for AudioActivity {
    fn default() -> Self {
        AudioActivity {
            epoch: Instant::now(),
            talking: AtomicBool::new(false),
            last_loud_ms: AtomicU64::new(0),
        }
    }
}

impl AudioActivity {
    /// Notes a piece of the service's audio; true when it starts the assistant's turn.
    pub fn heard(&self, pcm: &[i16], now: Instant) -> bool {
        if pcm.is_empty() || mean_square(pcm) < LOUD_RMS * LOUD_RMS {
            return false;
        }
        self.last_loud_ms.store(self.millis(now), Ordering::Relaxed);
        !self.talking.swap(true, Ordering::AcqRel)
    }

    /// True once when the assistant has been quiet for [`QUIET_GAP`] after talking.
    pub fn quiet(&self, now: Instant) -> bool {
        if !self.talking.load(Ordering::Acquire) {
            return false;
        }
        let since = self
            .millis(now)
            .saturating_sub(self.last_loud_ms.load(Ordering::Relaxed));
        since >= QUIET_GAP.as_millis() as u64 && self.talking.swap(false, Ordering::AcqRel)
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

fn mean_square(pcm: &[i16]) -> u64 {
    let sum: u64 = pcm
        .iter()
        .map(|&s| (i64::from(s) * i64::from(s)) as u64)
        .sum();
    sum / pcm.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_audio_starts_a_turn_once_and_quiet_ends_it_once() {
        let a = AudioActivity::default();
        let t0 = Instant::now();
        let loud = [3000i16; 960];
        let hush = [10i16; 960];
        assert!(!a.heard(&hush, t0), "comfort noise is not talking");
        assert!(a.heard(&loud, t0));
        assert!(!a.heard(&loud, t0 + Duration::from_millis(20)));
        assert!(!a.quiet(t0 + Duration::from_millis(400)));
        assert!(a.quiet(t0 + Duration::from_millis(20) + QUIET_GAP));
        assert!(!a.quiet(t0 + Duration::from_secs(5)), "reported once");
        assert!(a.heard(&loud, t0 + Duration::from_secs(6)), "a new turn");
    }
}
