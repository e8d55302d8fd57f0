//! Opening an ALSA PCM the way the engine needs it: mono, S16_LE, 48 kHz, interleaved, in
//! non-blocking mode (the threads wait with a timeout so that they can always stop), with short
//! periods. Errors name the device and say what to try.

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use super::shared::Side;
use super::SAMPLE_RATE;

/// Periods in the device buffer: enough to ride out a scheduling hiccup, few enough for latency.
pub const PERIODS: usize = 4;
/// Periods between two wake-ups of the playback thread.
const WAKE_PERIODS: alsa::pcm::Frames = 2;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot open {side} device `{name}`: {reason}")]
    Open {
        side: Side,
        name: String,
        reason: String,
    },
    #[error(
        "{side} device `{name}` cannot do mono 16-bit 48 kHz ({reason}); \
         put `plughw:` or `plug:` in front of its name so that ALSA converts"
    )]
    Format {
        side: Side,
        name: String,
        reason: String,
    },
}

/// An open, configured PCM and the period it got.
pub struct Pcm {
    pub pcm: PCM,
    /// Frames per period (the device's pace).
    pub period: usize,
    /// Frames in the device buffer.
    pub buffer: usize,
}

/// Why an ALSA call failed, in words for a person.
pub fn reason(e: &alsa::Error) -> String {
    match e.errno() {
        libc::ENOENT => "no such device (see `arecord -L` / `aplay -L`)".into(),
        libc::EBUSY => "device busy (another program is using it)".into(),
        libc::ENODEV => "device disappeared".into(),
        libc::EACCES | libc::EPERM => {
            "permission denied (is the user in the `audio` group?)".into()
        }
        _ => {
            let text = std::io::Error::from_raw_os_error(e.errno()).to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            format!("{text} in {}", e.func())
        }
    }
}

pub fn open(name: &str, side: Side, period_ms: u32) -> Result<Pcm, DeviceError> {
    let dir = match side {
        Side::Capture => Direction::Capture,
        Side::Playback => Direction::Playback,
    };
    // alsa-lib prints its own diagnostics to stderr; catch them (this thread only) and fold the
    // telling one into our single error line instead.
    let said = alsa::Output::local_error_handler().ok();
    let pcm = PCM::new(name, dir, true).map_err(|e| {
        let detail = said
            .as_ref()
            .map(|o| o.borrow().to_string())
            .and_then(|text| {
                text.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_owned)
            });
        DeviceError::Open {
            side,
            name: name.into(),
            reason: match detail {
                Some(d) => format!("{} [alsa-lib: {d}]", reason(&e)),
                None => reason(&e),
            },
        }
    })?;
    let format_err = |e: alsa::Error| DeviceError::Format {
        side,
        name: name.into(),
        reason: reason(&e),
    };
    let wanted = (SAMPLE_RATE / 1000 * period_ms.max(1)) as alsa::pcm::Frames;
    let (period, buffer) = {
        let hw = HwParams::any(&pcm).map_err(format_err)?;
        hw.set_access(Access::RWInterleaved).map_err(format_err)?;
        hw.set_format(Format::s16()).map_err(format_err)?;
        hw.set_channels(1).map_err(format_err)?;
        hw.set_rate(SAMPLE_RATE, ValueOr::Nearest)
            .map_err(format_err)?;
        let period = hw
            .set_period_size_near(wanted, ValueOr::Nearest)
            .map_err(format_err)?;
        let buffer = hw
            .set_buffer_size_near(period * PERIODS as alsa::pcm::Frames)
            .map_err(format_err)?;
        pcm.hw_params(&hw).map_err(format_err)?;
        (period, buffer)
    };
    {
        let sw = pcm.sw_params_current().map_err(format_err)?;
        // Playback is woken every two periods, not every one: half the wake-ups for the same
        // buffer (it writes until the buffer is full). Capture is woken every period: read two
        // at a time, the far end it is cancelled against arrives in bursts, the canceller now
        // and then found the echo late and took only 10-12 dB off it, and a minute of echo
        // barged in once in about one run in four (BENCHMARKS.md, "Local barge-in").
        let wake_periods = if side == Side::Playback {
            WAKE_PERIODS
        } else {
            1
        };
        let wake = (period * wake_periods).min(buffer / 2).max(period);
        sw.set_avail_min(wake).map_err(format_err)?;
        // Playback starts as soon as a period is queued; capture on the first read.
        let start = if side == Side::Playback { period } else { 1 };
        sw.set_start_threshold(start).map_err(format_err)?;
        pcm.sw_params(&sw).map_err(format_err)?;
    }
    pcm.prepare().map_err(format_err)?;
    Ok(Pcm {
        pcm,
        period: usize::try_from(period).unwrap_or(480).max(1),
        buffer: usize::try_from(buffer).unwrap_or(1920).max(1),
    })
}

/// How long the threads wait for a device at a time: short, so that they can always stop.
pub const WAIT_MS: u32 = 100;

/// A running device that is not ready for this long, with no error, has stalled: a clock or
/// DMA that stopped (an I2S microphone without its clock), a sound server that hangs. The
/// kernel gives up on a blocking read or write to such a card with EIO ("DMA or IRQ
/// trouble?"); in non-blocking mode, which lets the threads stop, nothing does, and the engine
/// would wait forever, deaf or mute.
pub const STALL_LIMIT_MS: u32 = 3_000;

/// Counts a device's waits that timed out since it last moved samples.
#[derive(Default)]
pub struct StallWatch {
    timeouts: u32,
}

impl StallWatch {
    /// Samples moved: the device is alive.
    pub fn moved(&mut self) {
        self.timeouts = 0;
    }

    /// A wait of [`WAIT_MS`] timed out: the reason to reopen once they add up to
    /// [`STALL_LIMIT_MS`].
    pub fn timed_out(&mut self) -> Option<String> {
        self.timeouts += 1;
        (self.timeouts * WAIT_MS >= STALL_LIMIT_MS).then(|| {
            format!(
                "no audio moved for {} s, with no error from ALSA (a stopped clock, or a \
                 sound server that hangs)",
                STALL_LIMIT_MS / 1000
            )
        })
    }
}

/// How the threads react to an error from a read, write or wait.
pub enum Trouble {
    /// Try again (nothing ready yet, or a signal).
    Again,
    /// An xrun (or a suspend) that ALSA recovered from.
    Xrun,
    /// The device is gone or broken: close it and reopen.
    Lost(String),
}

/// Classifies an error and recovers from what can be recovered in place.
pub fn trouble(pcm: &PCM, e: alsa::Error) -> Trouble {
    match e.errno() {
        libc::EAGAIN | libc::EINTR => Trouble::Again,
        libc::EPIPE | libc::ESTRPIPE => match pcm.try_recover(e, true) {
            Ok(()) => Trouble::Xrun,
            Err(e) => Trouble::Lost(reason(&e)),
        },
        _ => Trouble::Lost(reason(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_stalled_only_after_the_limit_without_moving_samples() {
        let mut watch = StallWatch::default();
        let waits = STALL_LIMIT_MS / WAIT_MS;
        for _ in 1..waits {
            assert_eq!(watch.timed_out(), None);
        }
        // Samples moved just before the limit: counting starts again.
        watch.moved();
        for _ in 1..waits {
            assert_eq!(watch.timed_out(), None);
        }
        let why = watch.timed_out().unwrap_or_default();
        assert!(why.starts_with("no audio moved for 3 s"), "{why}");
    }
}
