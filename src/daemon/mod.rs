//! The daemon's event loop: the one place where the state machine meets the world.
//!
//! Commands (D-Bus, button, signals), link events (the service), tool results and timer ticks
//! are turned into [`Input`]s; the machine's [`Action`]s are carried out here: connecting a
//! transport, sending events, steering audio, publishing state. Every slow thing (connecting,
//! running a tool) runs in a task of its own and reports back through `internal`, so the loop
//! never waits on I/O.

mod actions;
pub mod budget;
mod commands;
pub mod memory;
pub mod tools;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};
use tracing::{info, warn};

use crate::audio::AudioControl;

use crate::config::Config;
use crate::control::{Command, ControlHandle, Snapshot};

use crate::provided::ProvidedTools;
use crate::session::{ClientEvent, Input, LedPattern, Machine, Settings};
use crate::transport::{ConnectError, Connector, Link, LinkEvent};
use budget::{local_day, DailyBudget};
use memory::Memory;
pub use tools::ToolRunner;

/// Events produced by the daemon's own tasks, tagged with the link generation they belong to
/// so that a late answer from a superseded connection is ignored.
#[derive(Debug)]
pub enum Internal {
    Connected {
        generation: u64,
        link: Link,
    },
    ConnectFailed {
        generation: u64,
        error: ConnectError,
    },
    Link {
        generation: u64,
        event: LinkEvent,
    },
    ToolResult {
        call_id: String,
        output: String,
    },
    PlaybackDrained,
    LocalSpeech,
    SpeakerStarted,
    SpeakerSilenced(u64),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link({})", self.kind)
    }
}

/// Lets the audio engine tell the loop that playback ran dry.
#[derive(Clone)]
pub struct Notifier(mpsc::Sender<Internal>);

impl Notifier {
    pub fn playback_drained(&self) {
        let _ = self.0.try_send(Internal::PlaybackDrained);
    }

    /// The assistant's audio began to play at the speaker.
    pub fn speaker_started(&self) {
        let _ = self.0.try_send(Internal::SpeakerStarted);
    }

    /// The user was heard talking over the assistant (the speaker is already silent).
    pub fn local_speech(&self) {
        let _ = self.0.try_send(Internal::LocalSpeech);
    }

    /// After a local barge-in, the speaker fell silent `ms` after the user's voice began.
    pub fn speaker_silenced(&self, ms: u64) {
        let _ = self.0.try_send(Internal::SpeakerSilenced(ms));
    }
}

pub struct Parts {
    pub connector: Arc<dyn Connector>,
    pub audio: Arc<dyn AudioControl>,
    pub tools: Arc<dyn ToolRunner>,
    /// Tools other programs offer over D-Bus; the same list the connector's dialects and the
    /// tool runner read.
    pub provided: Arc<ProvidedTools>,
    /// Where memory and the daily budget are kept (`$STATE_DIRECTORY`).
    pub state_dir: std::path::PathBuf,
}

pub struct Daemon {
    config: Config,
    machine: Machine,
    parts: Parts,
    generation: u64,
    link: Option<mpsc::Sender<ClientEvent>>,
    /// Events for the link that did not fit in its queue, sent in order as it drains: a tool's
    /// output must reach the model even when a burst of calls fills the queue.
    backlog: std::collections::VecDeque<ClientEvent>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    commands_rx: mpsc::Receiver<Command>,
    handle: ControlHandle,
    snapshot_tx: watch::Sender<Snapshot>,
    led_tx: watch::Sender<LedPattern>,
    memory: Option<Memory>,
    budget: DailyBudget,
    /// While an echo check plays and records, conversations wait.
    audio_check_until: Option<Instant>,
}

impl Daemon {
    pub fn new(config: Config, parts: Parts) -> Self {
        let now = Instant::now();
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let machine = Machine::new(Settings::from_config(&config, seed), now);
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let (snapshot_tx, snapshot_rx) =
            watch::channel(Snapshot::new(config.transport.kind, config.audio.volume));
        let (transcripts, _) = broadcast::channel(64);
        let (led_tx, _) = watch::channel(LedPattern::Off);
        parts.audio.set_volume(config.audio.volume);
        let memory = load_memory(&config, &parts.state_dir);
        let budget = DailyBudget::load(&parts.state_dir, config.session.daily_limit_s);
        parts.provided.set_configured(&config.session.tools);
        Daemon {
            memory,
            budget,
            audio_check_until: None,
            handle: ControlHandle {
                commands: commands_tx,
                snapshot: snapshot_rx,
                transcripts,
                provided: Arc::clone(&parts.provided),
            },
            config,
            machine,
            parts,
            generation: 0,
            link: None,
            backlog: std::collections::VecDeque::new(),
            internal_tx,
            internal_rx,
            commands_rx,
            snapshot_tx,
            led_tx,
        }
    }

    /// For control surfaces: send commands, watch the snapshot, hear transcripts.
    pub fn handle(&self) -> ControlHandle {
        self.handle.clone()
    }

    /// The LED pattern to show; the GPIO driver follows it.
    pub fn led(&self) -> watch::Receiver<LedPattern> {
        self.led_tx.subscribe()
    }

    pub fn notifier(&self) -> Notifier {
        Notifier(self.internal_tx.clone())
    }

    /// Takes a new configuration (SIGHUP). The session, API, transport and tool settings apply
    /// from the next connect on (a conversation in progress keeps its own); a changed
    /// `audio.volume` applies at once. Devices, D-Bus and GPIO need a restart (`main` says so).
    pub fn reload(&mut self, config: Config) {
        let seed = self.generation.wrapping_add(0x9E37_79B9);
        self.machine
            .update_settings(Settings::from_config(&config, seed));
        if config.session.daily_limit_s != self.config.session.daily_limit_s {
            self.budget.set_limit(config.session.daily_limit_s);
            let left = self.budget.remaining(local_day(SystemTime::now()));
            self.feed(Input::BudgetLeft(left));
        }
        let shared = Arc::new(config.clone());
        if let Some(connector) = self.parts.connector.reconfigured(&shared) {
            self.parts.connector = connector;
        }
        self.parts.provided.set_configured(&config.session.tools);
        if config.session.tools != self.config.session.tools
            || config.session.max_tool_runs != self.config.session.max_tool_runs
        {
            if let Some(tools) = self.parts.tools.reconfigured(&config.session) {
                self.parts.tools = tools;
            }
        }
        // Only a changed value: a volume set over D-Bus is not reset by an unrelated edit.
        if config.audio.volume != self.config.audio.volume {
            self.command(Command::SetVolume(config.audio.volume));
        }
        self.config = config;
    }

    /// Runs until a `Shutdown` command, or until every command sender is gone.
    pub async fn run(mut self) {
        // Audio counters change on the ALSA threads; look at them once a second.
        let mut audio_poll = tokio::time::interval(std::time::Duration::from_secs(1));
        audio_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut provided = self.parts.provided.subscribe();
        loop {
            let deadline = self.machine.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            // Room in the link's queue, wanted only while events wait for it.
            let room = {
                let link = if self.backlog.is_empty() {
                    None
                } else {
                    self.link.clone()
                };
                async move {
                    match link {
                        Some(link) => link.reserve_owned().await.ok(),
                        None => std::future::pending().await,
                    }
                }
            };
            tokio::select! {
                _ = audio_poll.tick() => self.refresh_audio_stats(),
                command = self.commands_rx.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.command(command),
                },
                Some(event) = self.internal_rx.recv() => self.internal(event),
                // A program offered or withdrew a tool: the session hears of it.
                Ok(()) = provided.changed() => self.feed(Input::ToolsChanged),
                () = sleep => self.feed(Input::Tick),
                Some(permit) = room => {
                    if let Some(event) = self.backlog.pop_front() {
                        permit.send(event);
                    }
                }
            }
        }
        info!("shutting down");
        self.feed(Input::Stop);
        // Dropping the link's sender makes its task hang up; give it a moment to do so.
        self.drop_link();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    fn feed(&mut self, input: Input) {
        let actions = self.machine.handle(Instant::now(), input);
        for action in actions {
            self.act(action);
        }
    }
}

fn load_memory(config: &Config, state_dir: &std::path::Path) -> Option<Memory> {
    if config.session.memory != crate::config::Memory::On {
        return None;
    }
    let (memory, problem) = Memory::load(state_dir);
    if let Some(problem) = problem {
        warn!("{problem}");
    }
    Some(memory)
}
