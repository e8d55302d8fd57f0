//! Where the transports' audio for the speaker waits: a ring of a few seconds, which the
//! playback thread reads without a lock, and behind it a backlog that is used only when an
//! answer arrives faster than it plays (WebSocket sends whole answers ahead of time).
//!
//! Why two parts: a ring is touched all round as it wraps, so in a long call every page of it
//! becomes resident. WebRTC audio arrives at the pace it plays and never needs more than the
//! jitter buffer's few hundred ms, so a 30 s ring cost 2.9 MB of memory to hold 0.3 s. The
//! backlog grows only while something is ahead of the ring, and gives its memory back when
//! playback is flushed.

use std::collections::VecDeque;

use rtrb::Producer;

use super::jitter;

/// The transports' side (behind a mutex in the engine); playback takes the backlog into the
/// ring each period.
pub struct SpeakerQueue {
    ring: Producer<i16>,
    backlog: VecDeque<i16>,
    /// The most the backlog may hold; beyond it audio is dropped (and counted).
    backlog_limit: usize,
}

impl SpeakerQueue {
    pub fn new(ring: Producer<i16>, backlog_limit: usize) -> SpeakerQueue {
        SpeakerQueue {
            ring,
            backlog: VecDeque::new(),
            backlog_limit,
        }
    }

    /// Queues `pcm` behind what is already waiting; returns how many samples did not fit.
    pub fn push(&mut self, pcm: &[i16]) -> usize {
        // Never into the ring past a backlog: the order of the audio is kept.
        let direct = if self.backlog.is_empty() {
            pcm.len() - jitter::push(&mut self.ring, pcm)
        } else {
            0
        };
        let rest = &pcm[direct..];
        let room = self.backlog_limit.saturating_sub(self.backlog.len());
        let kept = rest.len().min(room);
        self.backlog.extend(&rest[..kept]);
        rest.len() - kept
    }

    /// Moves what fits of the backlog into the ring; returns whether any is left behind.
    pub fn refill(&mut self) -> bool {
        let n = self.ring.slots().min(self.backlog.len());
        if n > 0 {
            if let Ok(chunk) = self.ring.write_chunk_uninit(n) {
                chunk.fill_from_iter(self.backlog.drain(..n));
            }
        }
        !self.backlog.is_empty()
    }

    /// Everything waiting: in the ring (not yet read by playback) and behind it.
    pub fn queued(&self) -> usize {
        self.ring.buffer().capacity() - self.ring.slots() + self.backlog.len()
    }

    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Drops the backlog and returns its memory (a flush; playback empties the ring itself).
    pub fn clear_backlog(&mut self) {
        self.backlog = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtrb::RingBuffer;

    fn drain(consumer: &mut rtrb::Consumer<i16>) -> Vec<i16> {
        let mut out = Vec::new();
        while let Ok(s) = consumer.pop() {
            out.push(s);
        }
        out
    }

    #[test]
    fn audio_ahead_of_the_ring_waits_behind_it_in_order() {
        let (ring, mut playback) = RingBuffer::new(4);
        let mut queue = SpeakerQueue::new(ring, 100);
        assert_eq!(queue.push(&[1, 2, 3]), 0);
        assert_eq!(queue.push(&[4, 5, 6]), 0);
        assert!(queue.has_backlog());
        // Played a little: what fits moves in; newer pushes still wait behind the backlog.
        assert_eq!(queue.queued(), 6);
        assert_eq!(drain(&mut playback), vec![1, 2, 3, 4]);
        assert_eq!(queue.push(&[7]), 0);
        assert!(!queue.refill());
        assert_eq!(drain(&mut playback), vec![5, 6, 7]);
        assert!(!queue.refill());
        assert_eq!(queue.queued(), 0);
    }

    #[test]
    fn beyond_the_limit_audio_is_dropped_and_counted() {
        let (ring, _playback) = RingBuffer::new(2);
        let mut queue = SpeakerQueue::new(ring, 3);
        assert_eq!(queue.push(&[1, 2, 3, 4, 5, 6, 7]), 2);
        assert_eq!(queue.queued(), 5);
    }

    #[test]
    fn a_flush_drops_the_backlog() {
        let (ring, mut playback) = RingBuffer::new(2);
        let mut queue = SpeakerQueue::new(ring, 10);
        queue.push(&[1, 2, 3, 4]);
        queue.clear_backlog();
        assert!(!queue.refill());
        assert_eq!(drain(&mut playback), vec![1, 2]);
        // Playback went quiet: the next answer goes straight into the ring.
        queue.push(&[9]);
        assert!(!queue.has_backlog());
        assert_eq!(drain(&mut playback), vec![9]);
    }
}
