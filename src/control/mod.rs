//! How the outside world steers the daemon and sees what it does.
//!
//! Every control surface (D-Bus, the GPIO button, signals) sends [`Command`]s into the daemon's
//! event loop and reads its [`Snapshot`] from a `watch` channel; transcripts go out on a
//! broadcast channel. None of them touches the state machine directly.

pub mod dbus;
pub mod gpio;
pub mod selfcheck;
pub mod systemd;

pub use selfcheck::SelfCheck;

use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::TransportKind;
use crate::session::{Role, State, Stats};

/// Why a command was refused, named like the D-Bus errors (`io.thrive.RealtimeVoice1.Error.*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    NotActive(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    LimitReached(String),
    #[error("{0}")]
    Failed(String),
}

pub type Reply = oneshot::Sender<Result<(), Refusal>>;

#[derive(Debug)]
pub enum Command {
    Start(Option<Reply>),
    Stop(Option<Reply>),
    Toggle(Option<Reply>),
    SendText(String, Option<Reply>),
    SetMuted(bool),
    SetVolume(f64),
    /// Long press: stop and mute.
    StopAndMute,
    /// Forget the conversation memory kept on the device.
    ClearMemory(Option<Reply>),
    /// A new, already validated configuration (SIGHUP).
    Reload(Box<crate::config::Config>),
    /// Answered at once by the event loop: proves it is alive (the systemd watchdog).
    Ping(Option<Reply>),
    /// The audio self-check (`ListDevices`, `TestSpeaker`, `CheckEcho`).
    SelfCheck(SelfCheck),
    Shutdown,
}

/// Everything a status query shows. Cheap to clone; published on every change.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub state: State,
    pub transport: TransportKind,
    pub session_id: String,
    /// When `state` last changed.
    pub since: SystemTime,
    pub last_error: String,
    pub muted: bool,
    pub volume: f64,
    pub stats: Stats,
    /// The audio engine's counters and device health (gauges left at zero: they change every
    /// frame and would flood PropertiesChanged).
    pub audio: crate::audio::AudioStats,
    /// Audio packets lost on the network each way (WebRTC).
    pub link: crate::transport::LinkCounts,
}

impl Snapshot {
    pub fn new(transport: TransportKind, volume: f64) -> Self {
        Snapshot {
            state: State::Idle,
            transport,
            session_id: String::new(),
            since: SystemTime::now(),
            last_error: String::new(),
            muted: false,
            volume,
            stats: Stats::default(),
            audio: crate::audio::AudioStats::default(),
            link: crate::transport::LinkCounts::default(),
        }
    }
}

/// A final transcript line.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub role: Role,
    pub text: String,
}

/// The daemon's ends of the control channels, handed to each control surface.
#[derive(Clone)]
pub struct ControlHandle {
    pub commands: mpsc::Sender<Command>,
    pub snapshot: watch::Receiver<Snapshot>,
    pub transcripts: broadcast::Sender<Transcript>,
    /// Tools other programs offer (D-Bus `RegisterTool`).
    pub provided: std::sync::Arc<crate::provided::ProvidedTools>,
}

impl ControlHandle {
    /// Sends a command that carries a reply and waits for the answer.
    pub async fn request(
        &self,
        make: impl FnOnce(Option<Reply>) -> Command,
    ) -> Result<(), Refusal> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(Some(tx)))
            .await
            .map_err(|_| Refusal::Failed("the daemon is shutting down".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(Refusal::Failed("the daemon is shutting down".into())))
    }
}
