//! The delay the daemon itself adds to a call, measured while it runs: from the moment a sample
//! reached the microphone to the moment its packet went on the wire, and from the moment a
//! packet of the service's audio was read off the wire to the moment its first sample reaches
//! the speaker. Network and service are not in either figure.
//!
//! Each end records into a histogram of 1 ms buckets made of atomics: the capture and playback
//! threads and the transports' tasks record without locks or allocation, and `Stats` reads a
//! median and a 95th percentile from it.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::{duration_of, SAMPLE_RATE};

/// Delays up to this many ms are told apart; longer ones share the last bucket.
const BUCKETS: usize = 500;

/// The clock the threads publish their instants on (an `Instant` does not fit an atomic).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Microseconds since [`EPOCH`], for an atomic.
fn micros(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*EPOCH).as_micros()).unwrap_or(u64::MAX)
}

struct Histogram {
    buckets: [AtomicU32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Histogram {
    fn record(&self, delay: Duration) {
        let ms = usize::try_from(delay.as_millis()).unwrap_or(usize::MAX);
        self.buckets[ms.min(BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    /// The median and 95th percentile, both from one reading of the buckets.
    fn delays(&self) -> Delays {
        let counts: [u32; BUCKETS] = std::array::from_fn(|i| self.buckets[i].load(Relaxed));
        Delays {
            median_ms: quantile(&counts, 0.5),
            p95_ms: quantile(&counts, 0.95),
        }
    }
}

/// The delay (ms) that `share` of those counted do not exceed; `None` before any.
fn quantile(counts: &[u32], share: f64) -> Option<u32> {
    let total: u64 = counts.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * share).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (ms, &n) in counts.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            return u32::try_from(ms).ok();
        }
    }
    None
}

/// Both directions' delays since the engine started.
#[derive(Default)]
pub struct LatencyMeter {
    mic_to_wire: Histogram,
    wire_to_speaker: Histogram,
    /// What the playback device held after its last write (samples), and when (see [`micros`]).
    device_queued: AtomicU64,
    device_queued_at_us: AtomicU64,
}

/// A direction's median and 95th percentile (ms), once measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delays {
    pub median_ms: Option<u32>,
    pub p95_ms: Option<u32>,
}

impl LatencyMeter {
    /// A microphone frame whose first sample was heard at `heard_at` is on the wire now.
    pub fn frame_sent(&self, heard_at: Instant) {
        self.mic_to_wire.record(heard_at.elapsed());
    }

    /// The playback thread, after each write: the device holds `queued` samples.
    pub fn device_wrote(&self, queued: u64, now: Instant) {
        self.device_queued.store(queued, Relaxed);
        self.device_queued_at_us.store(micros(now), Relaxed);
    }

    /// Audio read off the wire now goes behind `ahead` samples still to be written: it reaches
    /// the speaker after those and after what the device holds, which has played on since the
    /// playback thread last looked.
    pub fn audio_arrived(&self, ahead: u64, now: Instant) {
        let since = micros(now).saturating_sub(self.device_queued_at_us.load(Relaxed));
        let played = since * u64::from(SAMPLE_RATE) / 1_000_000;
        let device = self.device_queued.load(Relaxed).saturating_sub(played);
        self.wire_to_speaker.record(duration_of(ahead + device));
    }

    pub fn mic_to_wire(&self) -> Delays {
        self.mic_to_wire.delays()
    }

    pub fn wire_to_speaker(&self) -> Delays {
        self.wire_to_speaker.delays()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_measured_reads_as_nothing() {
        let m = LatencyMeter::default();
        assert_eq!(m.mic_to_wire(), Delays::default());
        assert_eq!(m.wire_to_speaker(), Delays::default());
    }

    #[test]
    fn median_and_tail_come_from_the_buckets() {
        let h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_micros(ms * 1000 + 400));
        }
        let d = h.delays();
        assert_eq!(d.median_ms, Some(50));
        assert_eq!(d.p95_ms, Some(95));
        h.record(Duration::from_secs(10));
        let counts: Vec<u32> = h.buckets.iter().map(|b| b.load(Relaxed)).collect();
        assert_eq!(quantile(&counts, 1.0), Some(BUCKETS as u32 - 1));
    }

    #[test]
    fn arriving_audio_waits_for_the_queue_and_what_the_device_still_holds() {
        let m = LatencyMeter::default();
        let now = Instant::now();
        // 30 ms in the device, written 10 ms ago: 20 ms of it left; 40 ms queued ahead.
        m.device_wrote(1440, now);
        m.audio_arrived(1920, now + Duration::from_millis(10));
        assert_eq!(m.wire_to_speaker().median_ms, Some(60));
        // Long after the device ran dry, only the queue counts.
        m.audio_arrived(480, now + Duration::from_secs(1));
        m.audio_arrived(480, now + Duration::from_secs(1));
        assert_eq!(m.wire_to_speaker().median_ms, Some(10));
    }

    #[test]
    fn a_frame_heard_earlier_counts_from_its_first_sample() {
        let m = LatencyMeter::default();
        m.frame_sent(Instant::now() - Duration::from_millis(27));
        let d = m.mic_to_wire();
        assert!(matches!(d.median_ms, Some(27..=40)), "{d:?}");
    }
}
