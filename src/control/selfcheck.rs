//! The audio self-check as the control surfaces ask for it: the devices ALSA offers, a test
//! tone, and the echo check. The event loop owns the engine and the conversation state, so it
//! starts each check (and refuses the echo check during a conversation); the slow parts
//! (listing devices, waiting for the recording, reading it) run here, off the loop.

use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{Command, ControlHandle, Refusal};
use crate::audio::devices::{self, DeviceEntry};
use crate::audio::probe::{self, EchoReport, Recording};

/// A self-check request to the event loop.
#[derive(Debug)]
pub enum SelfCheck {
    /// The configured capture and playback device names.
    Devices(oneshot::Sender<(String, String)>),
    /// Plays the test tone; answers its length in ms.
    TestSpeaker(oneshot::Sender<Result<u32, Refusal>>),
    /// Starts the echo check; answers where its recording will arrive.
    CheckEcho(oneshot::Sender<Result<oneshot::Receiver<Recording>, Refusal>>),
}

fn gone() -> Refusal {
    Refusal::Failed("the daemon is shutting down".into())
}

async fn ask<T>(
    handle: &ControlHandle,
    make: impl FnOnce(oneshot::Sender<T>) -> SelfCheck,
) -> Result<T, Refusal> {
    let (tx, rx) = oneshot::channel();
    handle
        .commands
        .send(Command::SelfCheck(make(tx)))
        .await
        .map_err(|_| gone())?;
    rx.await.map_err(|_| gone())
}

pub async fn list_devices(handle: &ControlHandle) -> Result<Vec<DeviceEntry>, Refusal> {
    let (capture, playback) = ask(handle, SelfCheck::Devices).await?;
    tokio::task::spawn_blocking(move || devices::list_held(&capture, &playback))
        .await
        .map_err(|e| Refusal::Failed(format!("cannot list the sound devices: {e}")))
}

pub async fn test_speaker(handle: &ControlHandle) -> Result<u32, Refusal> {
    let ms = ask(handle, SelfCheck::TestSpeaker).await??;
    info!("test tone: {ms} ms at 440 Hz on the speaker");
    Ok(ms)
}

pub async fn check_echo(handle: &ControlHandle) -> Result<EchoReport, Refusal> {
    let recording = ask(handle, SelfCheck::CheckEcho).await??;
    let report = read_recording(recording).await.map_err(Refusal::Failed)?;
    log_report(&report);
    Ok(report)
}

/// Waits for the echo check's recording (bounded: a stalled microphone must not hang the
/// caller) and reads it off the async runtime.
pub async fn read_recording(recording: oneshot::Receiver<Recording>) -> Result<EchoReport, String> {
    let limit = Duration::from_millis(u64::from(probe::RECORD_MS)) + Duration::from_secs(3);
    let recording = match tokio::time::timeout(limit, recording).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => return Err("the audio engine stopped during the echo check".into()),
        Err(_) => {
            return Err(format!(
                "the microphone delivered no audio for {} s: is the capture device working?",
                limit.as_secs()
            ))
        }
    };
    tokio::task::spawn_blocking(move || probe::analyse(&recording))
        .await
        .map_err(|e| format!("cannot read the echo check's recording: {e}"))
}

pub fn log_report(report: &EchoReport) {
    if report.ok {
        info!("{}", report.line());
    } else {
        warn!("{}", report.line());
    }
}
