//! The microphone's Opus profile follows the loss the far end reports.
//!
//! The device sends CELT without FEC ([`OpusProfile::DEVICE`]): cheaper to encode and, on a
//! clean path, better than VOIP at 32 kbit/s. As losses grow, VOIP's in-band FEC catches up:
//! level at 6 % of packets lost, ahead beyond (BENCHMARKS.md, "Where VOIP overtakes CELT"). So
//! the far end's RTCP receiver reports are read every few seconds, and a lossy path switches
//! the encoder to VOIP with FEC until the path has been cleaner for a while.
//!
//! [`UplinkCodec`] decides from cumulative counts alone (no sockets, no clock of its own);
//! [`ReportReader`], an interceptor in the peer connection, keeps the latest counts in
//! [`FarEndReports`] for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;

use crate::audio::opus::OpusProfile;

/// Samples sent between two readings of the far end's reports (2.5 s of audio); reports come
/// every second or so.
pub const SAMPLES_PER_READING: usize = 120_000;
/// Least packets a window must span to be judged (4 s of 20 ms packets, 2 s of 10 ms ones): a
/// few lost out of a handful say nothing, and 6 % of 200 is twelve.
const MIN_WINDOW_PACKETS: u64 = 200;
/// Loss at or above which CELT gives way to VOIP with FEC: where the two scored level (PESQ,
/// mean of five voices over six patterns of loss); CELT scored higher at 5 % and under.
const LOSSY_PERCENT: f64 = 6.0;
/// Loss below which a window counts as clean: CELT scored clearly higher there (0.15 at 3 %),
/// and the gap to `LOSSY_PERCENT` keeps a path near either from flapping.
const CLEAN_PERCENT: f64 = 3.0;
/// How long the path must stay clean before CELT is tried again: a path that lost packets
/// once tends to again, and every switch costs the far decoder a fresh start.
const CLEAN_BEFORE_CELT: Duration = Duration::from_secs(30);

/// The far end's cumulative view of our stream, from its receiver reports (RFC 3550 6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportedCounts {
    /// Extended highest sequence number received.
    pub highest_sequence: u64,
    /// Cumulative number of packets lost.
    pub lost: u64,
}

/// A change of profile, and the loss (percent, over the last window) that caused it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Switch {
    pub profile: OpusProfile,
    pub loss_percent: f64,
}

/// Chooses the uplink's profile from the far end's reports.
#[derive(Debug)]
pub struct UplinkCodec {
    /// What the answer allows when the path is clean.
    clean: OpusProfile,
    /// Where the window being judged starts.
    since: Option<ReportedCounts>,
    /// When the path turned clean, while VOIP is on for loss.
    clean_since: Option<Instant>,
}

impl UplinkCodec {
    /// Starts with `clean`, the profile the answer allows ([`OpusProfile::device_within`]).
    pub fn new(clean: OpusProfile) -> Self {
        UplinkCodec {
            clean,
            since: None,
            clean_since: None,
        }
    }

    /// Takes the latest counts and the profile being sent; returns the switch to make, if any.
    pub fn on_counts(
        &mut self,
        current: OpusProfile,
        counts: ReportedCounts,
        now: Instant,
    ) -> Option<Switch> {
        let Some(since) = self.since else {
            self.since = Some(counts);
            return None;
        };
        if counts.highest_sequence < since.highest_sequence || counts.lost < since.lost {
            // Counters that go backwards are a new stream (or a confused peer): start over.
            self.since = Some(counts);
            return None;
        }
        let expected = counts.highest_sequence - since.highest_sequence;
        if expected < MIN_WINDOW_PACKETS {
            // Too little sent since (a pause, or no new report): keep widening the window.
            return None;
        }
        self.since = Some(counts);
        // `lost` may exceed `expected` on a peer that counts oddly; a window is at most all lost.
        let loss_percent =
            (counts.lost - since.lost).min(expected) as f64 * 100.0 / expected as f64;
        let OpusProfile::Celt { .. } = self.clean else {
            // Already VOIP (the answer's cap): nothing to adapt.
            return None;
        };
        match current {
            OpusProfile::Celt { .. } if loss_percent >= LOSSY_PERCENT => {
                self.clean_since = None;
                Some(Switch {
                    profile: OpusProfile::SERVICE,
                    loss_percent,
                })
            }
            OpusProfile::Voip { .. } if loss_percent < CLEAN_PERCENT => {
                let clean_since = *self.clean_since.get_or_insert(now);
                if now.saturating_duration_since(clean_since) >= CLEAN_BEFORE_CELT {
                    self.clean_since = None;
                    Some(Switch {
                        profile: self.clean,
                        loss_percent,
                    })
                } else {
                    None
                }
            }
            OpusProfile::Voip { .. } => {
                self.clean_since = None;
                None
            }
            OpusProfile::Celt { .. } => None,
        }
    }
}

/// The far end's latest reception report on our stream, as the peer connection's
/// [`ReportReader`] last saw it. One word, so a reading is never half old, half new.
#[derive(Debug)]
pub struct FarEndReports {
    /// Extended highest sequence number << 32 | cumulative lost; `NONE` until a report came.
    latest: AtomicU64,
    /// The cumulative loss already handed out by [`FarEndReports::take_newly_lost`].
    counted: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Default for FarEndReports {
    fn default() -> Self {
        FarEndReports {
            latest: AtomicU64::new(NONE),
            counted: AtomicU64::new(0),
        }
    }
}

impl FarEndReports {
    fn record(&self, block: &ReceptionReport) {
        // The cumulative loss is a signed 24-bit field (RFC 3550 6.4.1): duplicates can make
        // it negative, which counts as none lost.
        let lost = if block.total_lost & 0x80_0000 != 0 {
            0
        } else {
            u64::from(block.total_lost & 0xFF_FFFF)
        };
        let packed = u64::from(block.last_sequence_number) << 32 | lost;
        self.latest.store(packed, Ordering::Relaxed);
    }

    /// The counts of the latest report, once one has come.
    pub fn counts(&self) -> Option<ReportedCounts> {
        let packed = self.latest.load(Ordering::Relaxed);
        (packed != NONE).then_some(ReportedCounts {
            highest_sequence: packed >> 32,
            lost: packed & 0xFF_FFFF,
        })
    }

    /// Packets lost in the latest report that no earlier call counted, for `Stats`: the link
    /// asks once more as it ends, so that the reports after the microphone's last reading
    /// count too.
    pub fn take_newly_lost(&self) -> u64 {
        self.counts().map_or(0, |counts| self.count_lost(counts))
    }

    /// Counts `counts` (a reading of [`FarEndReports::counts`]) in the tally; returns the
    /// packets it adds. A total that went down (a new stream, or a peer that wrapped its
    /// counters) adds nothing, and counting goes on from it.
    pub fn count_lost(&self, counts: ReportedCounts) -> u64 {
        let before = self.counted.swap(counts.lost, Ordering::Relaxed);
        counts.lost.saturating_sub(before)
    }
}

/// An interceptor that reads the reception reports on our own streams (in receiver reports,
/// and in the sender reports of a far end that also sends) into [`FarEndReports`]; every
/// packet goes on unchanged. The peer connection's own statistics would be the place, but
/// the library (rtc 0.21.1) never feeds incoming receiver reports into them.
pub struct ReportReader {
    reports: Arc<FarEndReports>,
    /// Our streams' SSRCs, from `bind_local_stream`.
    local: Vec<u32>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl ReportReader {
    pub fn new(reports: Arc<FarEndReports>) -> Self {
        ReportReader {
            reports,
            local: Vec::new(),
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    fn read_blocks(&self, blocks: &[ReceptionReport]) {
        for block in blocks.iter().filter(|b| self.local.contains(&b.ssrc)) {
            self.reports.record(block);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for ReportReader {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                let packet = packet.as_any();
                if let Some(rr) = packet.downcast_ref::<ReceiverReport>() {
                    self.read_blocks(&rr.reports);
                } else if let Some(sr) = packet.downcast_ref::<SenderReport>() {
                    self.read_blocks(&sr.reports);
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for ReportReader {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if !self.local.contains(&info.ssrc) {
            self.local.push(info.ssrc);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local.retain(|ssrc| *ssrc != info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts after `sent` packets of which `lost` were lost, from sequence number 1000.
    fn counts(sent: u64, lost: u64) -> ReportedCounts {
        ReportedCounts {
            highest_sequence: 1000 + sent,
            lost,
        }
    }

    /// An encoder's side of the exchange: the profile sent, changed by every switch.
    struct Sent {
        codec: UplinkCodec,
        current: OpusProfile,
    }

    impl Sent {
        fn new(clean: OpusProfile) -> Self {
            Sent {
                codec: UplinkCodec::new(clean),
                current: clean,
            }
        }

        fn on_counts(&mut self, counts: ReportedCounts, now: Instant) -> Option<Switch> {
            let switch = self.codec.on_counts(self.current, counts, now);
            if let Some(switch) = switch {
                self.current = switch.profile;
            }
            switch
        }
    }

    /// Feeds 5 s windows of 250 packets, `loss` percent of each lost (rounded down to whole
    /// packets), on from `at` (counts `(sent, lost)` so far); returns the switches made, with
    /// the window they came in.
    fn windows(
        codec: &mut Sent,
        at: &mut (u64, u64),
        t0: Instant,
        loss: &[u64],
    ) -> Vec<(usize, Switch)> {
        let mut switches = Vec::new();
        for (i, lost) in loss.iter().enumerate() {
            at.0 += 250;
            at.1 += lost * 250 / 100;
            let now = t0 + Duration::from_secs(5 * at.0 / 250);
            if let Some(s) = codec.on_counts(counts(at.0, at.1), now) {
                switches.push((i, s));
            }
        }
        switches
    }

    #[test]
    fn a_lossy_path_turns_celt_into_voip_with_fec_and_a_clean_one_turns_it_back() {
        let t0 = Instant::now();
        let mut codec = Sent::new(OpusProfile::DEVICE);
        let mut at = (0, 0);
        assert!(codec.on_counts(counts(0, 0), t0).is_none());
        // Clean, then 4.8 % (12 of 250: CELT still scores higher), then 6 %.
        let switches = windows(&mut codec, &mut at, t0, &[0, 0, 5, 6, 6]);
        assert_eq!(switches.len(), 1, "{switches:?}");
        assert_eq!(switches[0].0, 3);
        assert_eq!(switches[0].1.profile, OpusProfile::SERVICE);
        assert!((switches[0].1.loss_percent - 6.0).abs() < 0.01);
        // A 4 % window is not clean; then 30 s of cleaner ones (2 % counts) bring CELT back.
        let switches = windows(&mut codec, &mut at, t0, &[0, 2, 4, 0, 2, 0, 0, 0, 1, 0, 0]);
        assert_eq!(switches.len(), 1, "{switches:?}");
        assert_eq!(switches[0].0, 9, "30 s after the first clean window");
        assert_eq!(switches[0].1.profile, OpusProfile::DEVICE);
        assert_eq!(codec.current, OpusProfile::DEVICE);
    }

    #[test]
    fn short_windows_wait_and_odd_counters_start_over() {
        let t0 = Instant::now();
        let mut codec = Sent::new(OpusProfile::DEVICE);
        codec.on_counts(counts(0, 0), t0);
        // 20 of 100 lost: too few packets to judge yet.
        assert!(codec.on_counts(counts(100, 20), t0).is_none());
        // The same window, widened to 300 packets with 20 lost: 6.7 %.
        let switch = codec.on_counts(counts(300, 20), t0).expect("a switch");
        assert_eq!(switch.profile, OpusProfile::SERVICE);
        // A report that goes backwards is a new baseline, not a loss of millions.
        let mut codec = Sent::new(OpusProfile::DEVICE);
        codec.on_counts(counts(5000, 50), t0);
        assert!(codec.on_counts(counts(10, 0), t0).is_none());
        assert!(codec.on_counts(counts(400, 0), t0).is_none());
        assert_eq!(codec.current, OpusProfile::DEVICE);
        // More lost than sent is read as all lost, not as an overflow.
        let switch = codec.on_counts(counts(700, 1000), t0).expect("a switch");
        assert!((switch.loss_percent - 100.0).abs() < 0.01);
    }

    fn report(ssrc: u32, highest: u32, total_lost: u32) -> ReceptionReport {
        ReceptionReport {
            ssrc,
            total_lost,
            last_sequence_number: highest,
            ..Default::default()
        }
    }

    fn rtcp(packet: Box<dyn rtc::rtcp::Packet>) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: rtc::shared::TransportContext::default(),
            message: rtc::interceptor::AttributedPacket::new(Packet::Rtcp(vec![packet])),
        }
    }

    #[test]
    fn the_interceptor_reads_reports_on_our_streams_and_passes_every_packet_on() {
        let reports = Arc::new(FarEndReports::default());
        let mut reader = ReportReader::new(reports.clone());
        reader.bind_local_stream(&StreamInfo {
            ssrc: 42,
            ..Default::default()
        });
        let rr = |reports| {
            rtcp(Box::new(ReceiverReport {
                ssrc: 7,
                reports,
                ..Default::default()
            }))
        };
        // A report on somebody else's stream is not ours.
        reader
            .handle_read(rr(vec![report(99, 5000, 40)]))
            .expect("read");
        assert_eq!(reports.counts(), None);
        assert!(reader.poll_read().is_some(), "passed on");
        reader
            .handle_read(rr(vec![report(99, 1, 1), report(42, 70_000, 12)]))
            .expect("read");
        assert_eq!(
            reports.counts(),
            Some(ReportedCounts {
                highest_sequence: 70_000,
                lost: 12
            })
        );
        // A far end that also sends reports in its sender reports; a negative cumulative loss
        // (duplicates) is none lost.
        reader
            .handle_read(rtcp(Box::new(SenderReport {
                ssrc: 7,
                reports: vec![report(42, 70_250, 0xFF_FFFE)],
                ..Default::default()
            })))
            .expect("read");
        assert_eq!(
            reports.counts(),
            Some(ReportedCounts {
                highest_sequence: 70_250,
                lost: 0
            })
        );
        assert!(reader.poll_read().is_some() && reader.poll_read().is_some());
        assert!(reader.poll_read().is_none());
    }

    #[test]
    fn lost_packets_are_counted_once_across_readings() {
        let reports = FarEndReports::default();
        assert_eq!(reports.take_newly_lost(), 0, "no report yet");
        let take_after = |highest, lost| {
            reports.record(&report(42, highest, lost));
            reports.take_newly_lost()
        };
        assert_eq!(take_after(100, 3), 3);
        assert_eq!(take_after(150, 3), 0);
        assert_eq!(take_after(200, 8), 5);
        // The total went down: nothing added, and counting goes on from the new total.
        assert_eq!(take_after(10, 1), 0);
        assert_eq!(take_after(60, 2), 1);
        // Asked again with no new report (the link's last look after the microphone's).
        assert_eq!(reports.take_newly_lost(), 0);
    }

    #[test]
    fn an_answer_that_capped_the_bitrate_keeps_voip_whatever_the_loss() {
        let t0 = Instant::now();
        let capped = OpusProfile::device_within(Some(24_000));
        let mut codec = Sent::new(capped);
        let mut at = (0, 0);
        codec.on_counts(counts(0, 0), t0);
        assert!(windows(&mut codec, &mut at, t0, &[10, 0, 0, 0, 0, 0, 0, 0, 0]).is_empty());
        assert_eq!(codec.current, capped);
    }
}
