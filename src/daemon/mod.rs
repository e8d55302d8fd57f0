//! The daemon's event loop: the one place where the state machine meets the world.
//!
//! Commands (D-Bus, button, signals), link events (the service), tool results and timer ticks
//! are turned into [`Input`]s; the machine's [`Action`]s are carried out here: connecting a
//! transport, sending events, steering audio, publishing state. Every slow thing (connecting,
//! running a tool) runs in a task of its own and reports back through `internal`, so the loop
//! never waits on I/O.

pub mod budget;
pub mod memory;
pub mod tools;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use crate::audio::AudioControl;

use crate::config::Config;
use crate::control::{Command, ControlHandle, Refusal, Reply, Snapshot, Transcript};

use crate::session::{Action, ClientEvent, Input, LedPattern, Machine, Settings, State};
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
}

pub struct Parts {
    pub connector: Arc<dyn Connector>,
    pub audio: Arc<dyn AudioControl>,
    pub tools: Arc<dyn ToolRunner>,
    /// Where memory and the daily budget are kept (`$STATE_DIRECTORY`).
    pub state_dir: std::path::PathBuf,
}

pub struct Daemon {
    config: Config,
    machine: Machine,
    parts: Parts,
    generation: u64,
    link: Option<mpsc::Sender<ClientEvent>>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    commands_rx: mpsc::Receiver<Command>,
    handle: ControlHandle,
    snapshot_tx: watch::Sender<Snapshot>,
    led_tx: watch::Sender<LedPattern>,
    memory: Option<Memory>,
    budget: DailyBudget,
    /// When the current live stretch began, for the daily budget.
    live_since: Option<Instant>,
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
        Daemon {
            memory,
            budget,
            live_since: None,
            handle: ControlHandle {
                commands: commands_tx,
                snapshot: snapshot_rx,
                transcripts,
            },
            config,
            machine,
            parts,
            generation: 0,
            link: None,
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
        let shared = Arc::new(config.clone());
        if let Some(connector) = self.parts.connector.reconfigured(&shared) {
            self.parts.connector = connector;
        }
        if config.session.tools != self.config.session.tools {
            if let Some(tools) = self.parts.tools.reconfigured(&config.session.tools) {
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
        loop {
            let deadline = [self.machine.next_deadline(), self.budget_deadline()]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = audio_poll.tick() => self.refresh_audio_stats(),
                command = self.commands_rx.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.command(command),
                },
                Some(event) = self.internal_rx.recv() => self.internal(event),
                () = sleep => {
                    self.feed(Input::Tick);
                    self.enforce_budget();
                }
            }
        }
        info!("shutting down");
        self.feed(Input::Stop);
        self.account_live_time(false);
        // Dropping the link's sender makes its task hang up; give it a moment to do so.
        self.link = None;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    fn reply(reply: Option<Reply>, result: Result<(), Refusal>) {
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start(reply) => {
                let result = self.check_budget();
                if result.is_ok() {
                    // Fed even when not configured: the device shows the error (LED, earcon,
                    // LastError) while the caller gets NotConfigured.
                    self.feed(Input::Start);
                }
                Self::reply(reply, result.and_then(|()| self.check_configured()));
            }
            Command::Stop(reply) => {
                let result =
                    if self.machine.state().is_active() || self.machine.state() == State::Error {
                        Ok(())
                    } else {
                        Err(Refusal::NotActive("no conversation is running".into()))
                    };
                self.feed(Input::Stop);
                Self::reply(reply, result);
            }
            Command::Toggle(reply) => {
                let starting = !self.machine.state().is_active();
                let result = if starting {
                    self.check_budget()
                } else {
                    Ok(())
                };
                if result.is_ok() {
                    self.feed(Input::Toggle);
                }
                let result = if starting {
                    result.and_then(|()| self.check_configured())
                } else {
                    result
                };
                Self::reply(reply, result);
            }
            Command::SendText(text, reply) => {
                let result = if self.machine.state().is_live() {
                    self.feed(Input::SendText(text));
                    Ok(())
                } else {
                    Err(Refusal::NotActive(format!(
                        "no conversation is connected (state: {})",
                        self.machine.state().as_str()
                    )))
                };
                Self::reply(reply, result);
            }
            Command::SetMuted(muted) => {
                self.parts.audio.set_muted(muted);
                self.snapshot_tx.send_modify(|s| s.muted = muted);
            }
            Command::SetVolume(volume) => {
                let volume = volume.clamp(0.0, 1.0);
                self.parts.audio.set_volume(volume);
                self.snapshot_tx.send_modify(|s| s.volume = volume);
            }
            Command::StopAndMute => {
                self.feed(Input::Stop);
                self.command(Command::SetMuted(true));
            }
            Command::ClearMemory(reply) => {
                let result = self.clear_memory();
                Self::reply(reply, result);
            }
            Command::Reload(config) => self.reload(*config),
            Command::Ping(reply) => Self::reply(reply, Ok(())),
            Command::Shutdown => {}
        }
    }

    fn internal(&mut self, event: Internal) {
        match event {
            Internal::Connected { generation, link } if generation == self.generation => {
                let Link {
                    kind,
                    commands,
                    mut events,
                    ..
                } = link;
                info!(transport = %kind, "connected");
                self.link = Some(commands);
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        let closed = matches!(event, LinkEvent::Closed { .. });
                        if tx.send(Internal::Link { generation, event }).await.is_err() || closed {
                            return;
                        }
                    }
                    let event = LinkEvent::Closed {
                        reason: "transport ended".into(),
                    };
                    let _ = tx.send(Internal::Link { generation, event }).await;
                });
                self.feed(Input::Connected);
            }
            Internal::ConnectFailed { generation, error } if generation == self.generation => {
                debug!("connect failed: {error}");
                let retry = error.is_retryable();
                self.feed(Input::ConnectFailed {
                    reason: error.message,
                    retry,
                });
            }
            Internal::Link { generation, event } if generation == self.generation => match event {
                LinkEvent::Server(event) => self.feed(Input::Server(event)),
                LinkEvent::Closed { reason } => {
                    self.link = None;
                    self.feed(Input::Closed { reason });
                }
            },
            Internal::ToolResult { call_id, output } => {
                self.feed(Input::ToolResult { call_id, output })
            }
            Internal::PlaybackDrained => self.feed(Input::PlaybackDrained),
            stale => debug!("ignoring event from an old connection: {stale:?}"),
        }
    }

    fn feed(&mut self, input: Input) {
        let actions = self.machine.handle(Instant::now(), input);
        for action in actions {
            self.act(action);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect { transport, attempt } => {
                self.generation += 1;
                self.link = None;
                let generation = self.generation;
                let connector = Arc::clone(&self.parts.connector);
                let tx = self.internal_tx.clone();
                info!(transport = %transport, attempt, "connecting");
                tokio::spawn(async move {
                    let event = match connector.connect(transport).await {
                        Ok(link) => Internal::Connected { generation, link },
                        Err(error) => Internal::ConnectFailed { generation, error },
                    };
                    let _ = tx.send(event).await;
                });
            }
            Action::Disconnect => {
                // A new generation makes any connect still under way report to no one.
                self.generation += 1;
                self.link = None;
            }
            Action::Send(ClientEvent::SessionUpdate) => {
                self.send(ClientEvent::SessionUpdate);
                // What the device remembers goes in right after the session is configured.
                let history: Vec<ClientEvent> = self
                    .memory
                    .iter()
                    .flat_map(|m| m.turns())
                    .map(|(role, text)| ClientEvent::HistoryItem {
                        role,
                        text: text.to_owned(),
                    })
                    .collect();
                for item in history {
                    self.send(item);
                }
            }
            Action::Send(event) => self.send(event),
            Action::FlushPlayback => self.parts.audio.flush_playback(),
            Action::TruncatePlayed { item_id } => {
                let audio_end_ms = self.parts.audio.played_ms();
                self.send(ClientEvent::Truncate {
                    item_id,
                    audio_end_ms,
                });
            }
            Action::Earcon(earcon) => self.parts.audio.play_earcon(earcon),
            Action::Led(pattern) => {
                let _ = self.led_tx.send_replace(pattern);
            }
            Action::StateChanged(state) => {
                info!(state = state.as_str(), "state changed");
                self.account_live_time(state.is_live());
                self.parts.audio.set_capture(state.is_live());
                let (transport, session_id) = (
                    self.machine.transport(),
                    self.machine.session_id().map(str::to_owned),
                );
                self.snapshot_tx.send_modify(|s| {
                    s.state = state;
                    s.transport = transport;
                    s.session_id = session_id.unwrap_or_default();
                    s.since = SystemTime::now();
                });
            }
            Action::LastError(message) => {
                if !message.is_empty() {
                    warn!("{message}");
                }
                self.snapshot_tx.send_modify(|s| s.last_error = message);
            }
            Action::Transcript { role, text } => {
                if self.config.log.transcripts {
                    info!(role = role.as_str(), "transcript: {text}");
                }
                if let Some(memory) = &mut self.memory {
                    if let Err(e) = memory.remember(role, &text) {
                        warn!("cannot save conversation memory: {e}");
                    }
                }
                let _ = self.handle.transcripts.send(Transcript { role, text });
            }
            Action::RunTool {
                call_id,
                name,
                arguments,
            } => {
                info!(tool = %name, "tool call");
                let tools = Arc::clone(&self.parts.tools);
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let output = tools.run(name, arguments).await;
                    let _ = tx.send(Internal::ToolResult { call_id, output }).await;
                });
            }
            Action::SessionEnded(reason) => info!(?reason, "conversation ended"),
            Action::StatsChanged => {
                let stats = self.machine.stats().clone();
                let session_id = self
                    .machine
                    .session_id()
                    .map(str::to_owned)
                    .unwrap_or_default();
                self.snapshot_tx.send_modify(|s| {
                    s.stats = stats;
                    s.session_id = session_id;
                });
            }
        }
    }

    fn refresh_audio_stats(&mut self) {
        let mut fresh = self.parts.audio.stats();
        fresh.queued_ms = 0;
        fresh.jitter_target_ms = 0;
        fresh.capture_frames = 0;
        let lost = self.parts.connector.packets_lost();
        self.snapshot_tx.send_if_modified(|s| {
            if s.audio == fresh && s.packets_lost == lost {
                return false;
            }
            s.packets_lost = lost;
            if s.audio.device_problem != fresh.device_problem {
                match &fresh.device_problem {
                    Some(problem) => warn!("audio: {problem}"),
                    None => info!("audio devices are working again"),
                }
            }
            s.audio = fresh;
            true
        });
    }

    fn check_configured(&self) -> Result<(), Refusal> {
        self.parts.connector.ready().map_err(Refusal::NotConfigured)
    }

    fn check_budget(&mut self) -> Result<(), Refusal> {
        if self.budget.exhausted(local_day(SystemTime::now())) {
            let minutes = self.budget.limit().map_or(0, |l| l.as_secs() / 60);
            return Err(Refusal::LimitReached(format!(
                "today's conversation time ({minutes} min, session.daily_limit_s) is used up; it resets at midnight"
            )));
        }
        Ok(())
    }

    /// Starts or ends a live stretch and books the time spent.
    fn account_live_time(&mut self, live: bool) {
        match (live, self.live_since) {
            (true, None) => self.live_since = Some(Instant::now()),
            (false, Some(since)) => {
                self.live_since = None;
                if let Err(e) = self
                    .budget
                    .spend(local_day(SystemTime::now()), since.elapsed())
                {
                    warn!("cannot save the daily usage: {e}");
                }
            }
            _ => {}
        }
    }

    fn budget_deadline(&mut self) -> Option<Instant> {
        let since = self.live_since?;
        let remaining = self.budget.remaining(local_day(SystemTime::now()))?;
        Some(since + remaining)
    }

    fn enforce_budget(&mut self) {
        if let Some(deadline) = self.budget_deadline() {
            if Instant::now() >= deadline {
                self.feed(Input::Stop);
                let message =
                    "stopped: today's conversation time (session.daily_limit_s) is used up"
                        .to_owned();
                warn!("{message}");
                self.snapshot_tx.send_modify(|s| s.last_error = message);
            }
        }
    }

    /// Forget the remembered turns (D-Bus `ClearMemory`).
    pub fn clear_memory(&mut self) -> Result<(), Refusal> {
        match &mut self.memory {
            Some(m) => m
                .clear()
                .map_err(|e| Refusal::Failed(format!("cannot clear conversation memory: {e}"))),
            None => Ok(()),
        }
    }

    fn send(&mut self, event: ClientEvent) {
        match &self.link {
            // A full queue means the link is stuck; dropping the event is better than stalling
            // the loop, and the link's own health check will end it.
            Some(link) => {
                if let Err(e) = link.try_send(event) {
                    warn!("could not queue an event for the service: {e}");
                }
            }
            None => debug!("no link for {event:?}"),
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
