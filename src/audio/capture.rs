//! The capture thread: reads the microphone from ALSA, cleans it with the echo canceller against
//! what playback wrote, and hands 20 ms frames to the transport while capture is on.
//!
//! Nothing here allocates once running (the device error path aside). A full frame channel drops
//! the frame and counts it; a missing device is reopened with backoff.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtrb::Consumer;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;
use tracing::{debug, warn};

use super::barge_in::{Block, LocalVoice};
use super::device::{self, Pcm, Trouble};
use super::echo::{EchoCanceller, BLOCK};
use super::shared::{Shared, Side};
use super::supervisor::{Device, DeviceUser};
use super::{duration_of, Frame, MicFrame, FRAME_SAMPLES};

/// Far-end audio queued beyond this is skipped. Playback writes ahead of what the speaker
/// sounds (its device buffer), so the freshest reference always precedes its echo; a stale one
/// could arrive after the echo, and no canceller can remove an echo it has not yet been told of.
const MAX_REFERENCE_BACKLOG: usize = 2 * BLOCK;

pub(crate) struct Capture {
    pub device: String,
    pub period_ms: u32,
    /// Samples in a microphone frame (`audio.frame_ms`): a whole number of blocks.
    pub frame_samples: usize,
    pub pcm: Option<Pcm>,
    pub echo: Option<EchoCanceller>,
    /// What playback wrote, sample for sample.
    pub reference: Consumer<i16>,
    pub frames: Sender<MicFrame>,
    pub shared: Arc<Shared>,
    /// Local barge-in, when on (it needs the canceller's voice detector).
    pub voice: Option<LocalVoice>,
}

/// Per-block state carried across reads.
struct Blocks {
    block: [i16; BLOCK],
    filled: usize,
    far: [i16; BLOCK],
    /// The block before the canceller, kept only while the echo check records.
    raw: [i16; BLOCK],
    frame: Frame,
    in_frame: usize,
    /// When the frame's first sample reached the microphone.
    frame_heard_at: Instant,
    /// Blocks read since the stream opened.
    index: u64,
    /// Both sides' xruns as of the last block.
    xruns_seen: u64,
}

/// A capture thread's work on whichever device is open.
struct CaptureRun<'a> {
    capture: &'a mut Capture,
    blocks: Blocks,
}

impl DeviceUser for CaptureRun<'_> {
    fn work(&mut self, pcm: &Pcm) -> Option<String> {
        self.capture.read_until_trouble(pcm, &mut self.blocks)
    }
}

impl Capture {
    pub fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let name = self.device.clone();
        let device = Device {
            shared: &shared,
            name: &name,
            side: Side::Capture,
            period_ms: self.period_ms,
        };
        let pcm = self.pcm.take();
        let mut run = CaptureRun {
            capture: &mut self,
            blocks: Blocks {
                block: [0; BLOCK],
                filled: 0,
                far: [0; BLOCK],
                raw: [0; BLOCK],
                frame: [0; FRAME_SAMPLES],
                in_frame: 0,
                frame_heard_at: Instant::now(),
                index: 0,
                xruns_seen: 0,
            },
        };
        device.supervise(pcm, &mut run);
    }

    /// Reads until told to stop (`None`) or until the device fails (`Some(reason)`).
    fn read_until_trouble(&mut self, pcm: &Pcm, b: &mut Blocks) -> Option<String> {
        let io = match pcm.pcm.io_i16() {
            Ok(io) => io,
            Err(e) => return Some(device::reason(&e)),
        };
        let opened = Instant::now();
        b.index = 0;
        let mut blocks: u64 = 0;
        // Once per open, with the log's wall-clock time: where the stream's sample 0 was taken
        // (the session benchmark lines up recordings with it).
        let mut first = true;
        let mut stall = device::StallWatch::default();
        loop {
            if self.shared.stop.load(Relaxed) {
                return None;
            }
            // A capture stream starts on its first read, but a hw: device is never ready for one
            // before it runs: start it (again after an xrun's recovery) instead of waiting forever.
            if pcm.pcm.state() == alsa::pcm::State::Prepared {
                let _ = pcm.pcm.start();
            }
            // Bounded wait: the thread notices `stop` even if the device goes quiet.
            match pcm.pcm.wait(Some(device::WAIT_MS)) {
                Ok(true) => {}
                Ok(false) => match stall.timed_out() {
                    None => continue,
                    Some(why) => return Some(why),
                },
                Err(e) => match device::trouble(&pcm.pcm, e) {
                    Trouble::Again => continue,
                    Trouble::Xrun => {
                        self.shared.capture_xruns.fetch_add(1, Relaxed);
                        continue;
                    }
                    Trouble::Lost(why) => return Some(why),
                },
            }
            // A wake-up may bring more than a period (a sound server delivers in bursts): read
            // all it brought, a block at a time, and no more than the device buffer holds (a
            // clock-less device always has more).
            for _ in 0..pcm.buffer.div_ceil(BLOCK) + 1 {
                match io.readi(&mut b.block[b.filled..]) {
                    Ok(n) => {
                        if n > 0 {
                            stall.moved();
                            if first {
                                first = false;
                                // Stream time starts with its first samples, which a sound
                                // server may deliver a while after the open.
                                if let Ok(mut epoch) = self.shared.capture_epoch.lock() {
                                    *epoch = Some(Instant::now());
                                }
                                debug!(device = %self.device, samples = n, "capture stream running");
                            }
                        }
                        b.filled += n;
                        if b.filled < BLOCK {
                            break;
                        }
                        b.filled = 0;
                        if b.in_frame == 0 {
                            b.frame_heard_at = heard_at(&pcm.pcm);
                        }
                        self.block(b);
                        b.index += 1;
                        blocks += 1;
                        pace(opened, blocks);
                    }
                    Err(e) => {
                        match device::trouble(&pcm.pcm, e) {
                            Trouble::Again => {}
                            Trouble::Xrun => {
                                self.shared.capture_xruns.fetch_add(1, Relaxed);
                            }
                            Trouble::Lost(why) => return Some(why),
                        }
                        break;
                    }
                }
            }
        }
    }

    /// One full 10 ms block: echo-cancel it, add it to the frame, send a full frame.
    fn block(&mut self, b: &mut Blocks) {
        // Keep the far end aligned with the near end: what playback wrote a long time ago no
        // longer matters.
        let backlog = self.reference.slots();
        // An xrun on either side moves the echo against its reference: the canceller has to
        // find it again, and local barge-in must not take the echo for a voice meanwhile.
        let xruns =
            self.shared.capture_xruns.load(Relaxed) + self.shared.playback_xruns.load(Relaxed);
        let skip = backlog.saturating_sub(MAX_REFERENCE_BACKLOG);
        let realigned = (skip > 0 || xruns != b.xruns_seen)
            .then(|| u32::try_from(skip.div_ceil(BLOCK)).unwrap_or(u32::MAX));
        b.xruns_seen = xruns;
        if skip > 0 {
            if let Ok(chunk) = self.reference.read_chunk(skip) {
                chunk.commit_all();
            }
            self.shared
                .reference_dropped
                .fetch_add(skip as u64, Relaxed);
        }
        // While the speaker is idle nothing is written: the far end is silence. While it plays,
        // a missing far end means playback is late with it: the echo may be here without it.
        let far_missing = match self.reference.read_chunk(BLOCK) {
            Ok(chunk) => {
                let (x, y) = chunk.as_slices();
                b.far[..x.len()].copy_from_slice(x);
                b.far[x.len()..].copy_from_slice(y);
                chunk.commit_all();
                false
            }
            Err(_) => {
                b.far.fill(0);
                self.shared.audible.load(Relaxed)
            }
        };
        // The echo check records the microphone before and after the canceller.
        let recording = self.shared.recording.load(Relaxed);
        if recording {
            b.raw.copy_from_slice(&b.block);
        }
        // Nobody listens outside a conversation: skip the canceller, which is most of the
        // capture thread's work, so that an idle daemon costs next to nothing. Its filter is
        // kept and picks up where it left off when capture comes back on.
        let capture_on = self.shared.capture_on.load(Relaxed);
        if !capture_on && !recording {
            b.in_frame = 0;
            return;
        }
        if let Some(echo) = self.echo.as_mut() {
            self.shared.echo_blocks.fetch_add(1, Relaxed);
            // Pass a block through rather than go silent when a step fails.
            if let Err(e) = echo.cancel(&mut b.block, &b.far) {
                warn!("{e}");
            }
            if let Some(voice) = self.voice.as_mut() {
                // Armed while the assistant's audio is in the speaker and not already hushed;
                // the voice detector is asked only then (its statistics call is not free).
                let armed = self.shared.audible.load(Relaxed) && !self.shared.hush.load(Relaxed);
                let block = Block {
                    armed,
                    voiced: armed && echo.has_voice(),
                    near: &b.block,
                    far: &b.far,
                    realigned,
                    far_missing,
                    index: b.index,
                };
                if let Some(fired) = voice.block(&block) {
                    self.shared
                        .hush_onset_ms
                        .store(fired.onset_block * 10, Relaxed);
                    self.shared.hush_unlogged.store(true, Relaxed);
                    self.shared.hush.store(true, Relaxed);
                    // Where the time to silence goes: the block that fired ends at
                    // `(index + 1) * 10` ms of the stream; we are at `now_ms`.
                    debug!(
                        residual_db = voice.residual_db(),
                        onset_ms = fired.onset_block * 10,
                        block_end_ms = (b.index + 1) * 10,
                        now_ms = self.shared.capture_ms(Instant::now()),
                        "local barge-in fired"
                    );
                    self.shared.local_barge_ins.fetch_add(1, Relaxed);
                    self.shared.local_speech();
                }
            }
            // Noise suppression after barge-in has listened: it eats the soft start of words.
            if let Err(e) = echo.denoise(&mut b.block) {
                warn!("{e}");
            }
        }
        if recording {
            self.record(b);
        }
        if !capture_on {
            b.in_frame = 0;
            return;
        }
        b.frame[b.in_frame..b.in_frame + BLOCK].copy_from_slice(&b.block);
        b.in_frame += BLOCK;
        if b.in_frame < self.frame_samples.clamp(BLOCK, FRAME_SAMPLES) {
            return;
        }
        let frame = MicFrame {
            pcm: b.frame,
            len: b.in_frame,
            heard_at: b.frame_heard_at,
        };
        b.in_frame = 0;
        match self.frames.try_send(frame) {
            Ok(()) => {
                self.shared.capture_frames.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.shared.capture_dropped.fetch_add(1, Relaxed);
            }
            // The engine holds the receiver, so this only happens while shutting down.
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

impl Capture {
    /// One block into the echo check's recording; sends it once full. The recording's room was
    /// set aside when the check began, so this does not allocate.
    fn record(&self, b: &Blocks) {
        let Ok(mut slot) = self.shared.recorder.try_lock() else {
            return;
        };
        let full = match slot.as_mut() {
            Some(r) => {
                r.recording.cancelled = self.echo.as_ref().is_some_and(|e| e.cancels_echo());
                r.recording.push(&b.far, &b.raw, &b.block)
            }
            None => true,
        };
        if full {
            self.shared.recording.store(false, Relaxed);
            if let Some(r) = slot.take() {
                let _ = r.done.send(r.recording);
            }
        }
    }
}

/// When the first sample of the block just read reached the microphone: the block, and what
/// the device has recorded since (its delay), ago. Asked once a frame.
fn heard_at(pcm: &alsa::PCM) -> Instant {
    let behind = pcm.delay().map_or(0, |d| d.max(0) as u64) + BLOCK as u64;
    let now = Instant::now();
    now.checked_sub(duration_of(behind)).unwrap_or(now)
}

/// A device with no clock of its own (ALSA's `null`, a `file` plugin) delivers as fast as it is
/// read; keep it to real time, as a card would be, so that it neither spins a core nor floods
/// the transport with frames it then drops. A card cannot deliver sound before it was recorded:
/// only a clock-less device is ever this far ahead of ours.
fn pace(opened: Instant, blocks: u64) {
    let audio = Duration::from_millis(blocks * 10);
    let elapsed = opened.elapsed();
    if let Some(early) = audio.checked_sub(elapsed + CLOCKLESS_SLACK + elapsed / 100) {
        // One block more than needed: the thread then sleeps every other block, not every one.
        std::thread::sleep(early + Duration::from_millis(10));
    }
}

/// How far ahead of the wall clock a device may run before it is taken for one with no clock.
const CLOCKLESS_SLACK: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;
    use rtrb::RingBuffer;
    use tokio::sync::mpsc;

    fn capture(shared: &Arc<Shared>) -> (Capture, rtrb::Producer<i16>, mpsc::Receiver<MicFrame>) {
        let (far_tx, far_rx) = RingBuffer::new(BLOCK * 8);
        let (frames_tx, frames_rx) = mpsc::channel(8);
        let capture = Capture {
            device: "test".into(),
            period_ms: 10,
            frame_samples: FRAME_SAMPLES,
            pcm: None,
            echo: EchoCanceller::new(true, true).expect("canceller"),
            reference: far_rx,
            frames: frames_tx,
            shared: shared.clone(),
            voice: None,
        };
        (capture, far_tx, frames_rx)
    }

    fn blocks() -> Blocks {
        Blocks {
            block: [100; BLOCK],
            filled: 0,
            far: [0; BLOCK],
            raw: [0; BLOCK],
            frame: [0; FRAME_SAMPLES],
            in_frame: 0,
            frame_heard_at: Instant::now(),
            index: 0,
            xruns_seen: 0,
        }
    }

    /// An xrun with little far end queued realigns without trimming (and without underflow).
    #[test]
    fn an_xrun_with_a_short_backlog_skips_nothing() {
        let shared = Arc::new(Shared::default());
        let (mut capture, mut far, _frames) = capture(&shared);
        let mut b = blocks();
        assert_eq!(crate::audio::jitter::push(&mut far, &[7; BLOCK]), 0);
        shared.playback_xruns.store(1, Relaxed);
        capture.block(&mut b);
        assert_eq!(shared.reference_dropped.load(Relaxed), 0);
        assert_eq!(b.xruns_seen, 1);
        assert_eq!(
            b.far, [7; BLOCK],
            "the queued far end was used, not skipped"
        );
    }

    /// Outside a conversation the canceller does not run, yet the far end keeps draining so
    /// that it is aligned when capture comes back on.
    #[test]
    fn the_canceller_rests_while_capture_is_off() {
        let shared = Arc::new(Shared::default());
        let (mut capture, mut far, mut frames) = capture(&shared);
        let mut b = blocks();
        for _ in 0..10 {
            assert_eq!(crate::audio::jitter::push(&mut far, &[7; BLOCK]), 0);
            capture.block(&mut b);
        }
        assert_eq!(shared.echo_blocks.load(Relaxed), 0);
        assert_eq!(capture.reference.slots(), 0, "far end not drained");
        assert!(frames.try_recv().is_err(), "a frame was sent while off");

        // Turned on in the middle of what would have been a frame: frames start afresh.
        shared.capture_on.store(true, Relaxed);
        for _ in 0..4 {
            b.block = [100; BLOCK];
            capture.block(&mut b);
        }
        assert_eq!(shared.echo_blocks.load(Relaxed), 4);
        assert_eq!(shared.capture_frames.load(Relaxed), 2);
        for _ in 0..2 {
            let frame = frames.try_recv().expect("a frame");
            assert_eq!(frame.samples().len(), FRAME_SAMPLES);
        }
    }

    /// With `audio.frame_ms = 10` every block leaves as a frame of its own, heard when it was.
    #[test]
    fn ten_ms_frames_leave_block_by_block() {
        let shared = Arc::new(Shared::default());
        let (mut capture, _far, mut frames) = capture(&shared);
        capture.frame_samples = BLOCK;
        shared.capture_on.store(true, Relaxed);
        let mut b = blocks();
        let t0 = Instant::now();
        for i in 0..3u64 {
            b.frame_heard_at = t0 + std::time::Duration::from_millis(10 * i);
            b.block = [100; BLOCK];
            capture.block(&mut b);
            let frame = frames.try_recv().expect("a frame for each block");
            assert_eq!(frame.samples().len(), BLOCK);
            assert_eq!(frame.heard_at, b.frame_heard_at);
        }
        assert_eq!(shared.capture_frames.load(Relaxed), 3);
        assert!(frames.try_recv().is_err());
    }
}
