//! The life of a conversation as a plain state machine: inputs in, actions out.
//!
//! It owns no socket, no sound card and no clock. Every input comes with the current time, and
//! [`Machine::next_deadline`] says when it next wants a [`Input::Tick`]; the daemon's event loop
//! (see `daemon.rs`) does the waiting and carries out the [`Action`]s. That keeps every rule of
//! the conversation (reconnects, timeouts, barge-in, one response at a time) testable in
//! microseconds without any I/O.

use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::events::{ClientEvent, Role, ServerEvent, Usage};
use crate::config::{Config, TransportKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Connecting,
    Listening,
    Speaking,
    Reconnecting,
    Error,
}

impl State {
    /// The name used on D-Bus, in `STATUS=` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Listening => "listening",
            State::Speaking => "speaking",
            State::Reconnecting => "reconnecting",
            State::Error => "error",
        }
    }

    /// A session is wanted by the user (Stop has work to do).
    pub fn is_active(self) -> bool {
        !matches!(self, State::Idle | State::Error)
    }

    /// A transport is up and audio should flow.
    pub fn is_live(self) -> bool {
        matches!(self, State::Listening | State::Speaking)
    }
}

/// Short sounds played on the device itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earcon {
    Start,
    Stop,
    Error,
}

/// What the status LED shows for each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedPattern {
    Off,
    SlowBlink,
    On,
    Breathing,
    FastBlink,
}

impl LedPattern {
    pub fn for_state(state: State) -> LedPattern {
        match state {
            State::Idle => LedPattern::Off,
            State::Connecting | State::Reconnecting => LedPattern::SlowBlink,
            State::Listening => LedPattern::On,
            State::Speaking => LedPattern::Breathing,
            State::Error => LedPattern::FastBlink,
        }
    }
}

/// Why a session ended, for logs and D-Bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    User,
    IdleTimeout,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Start,
    Stop,
    Toggle,
    SendText(String),
    /// The transport asked for by the last [`Action::Connect`] is up.
    Connected,
    /// Connecting failed; `retry = false` for errors a retry cannot fix (a rejected key).
    ConnectFailed {
        reason: String,
        retry: bool,
    },
    /// An established transport went away.
    Closed {
        reason: String,
    },
    Server(ServerEvent),
    ToolResult {
        call_id: String,
        output: String,
    },
    /// Local playback has played out everything it was given.
    PlaybackDrained,
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a transport of this kind (fetching a token first as needed) and report back with
    /// `Connected` or `ConnectFailed`.
    Connect {
        transport: TransportKind,
        attempt: u32,
    },
    /// Close the transport, if any.
    Disconnect,
    Send(ClientEvent),
    /// Drop everything queued for the speaker now (barge-in, stop).
    FlushPlayback,
    /// WebSocket barge-in: truncate `item_id` to the audio actually played (the audio engine
    /// knows how much that was, the machine does not).
    TruncatePlayed {
        item_id: String,
    },
    Earcon(Earcon),
    Led(LedPattern),
    StateChanged(State),
    /// A new last error (empty when cleared).
    LastError(String),
    Transcript {
        role: Role,
        text: String,
    },
    RunTool {
        call_id: String,
        name: String,
        arguments: String,
    },
    SessionEnded(StopReason),
    StatsChanged,
}

/// The timing and retry settings the machine needs, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub transport: TransportKind,
    pub fallback: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub max_session: Duration,
    pub reconnect_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub earcons: bool,
    pub tools: bool,
    pub jitter_seed: u64,
}

impl Settings {
    pub fn from_config(config: &Config, jitter_seed: u64) -> Self {
        let s = &config.session;
        let t = &config.transport;
        Settings {
            transport: t.kind,
            fallback: t.fallback,
            connect_timeout: Duration::from_millis(t.connect_timeout_ms),
            idle_timeout: (s.idle_timeout_s > 0).then(|| Duration::from_secs(s.idle_timeout_s)),
            max_session: Duration::from_secs(s.max_session_s),
            reconnect_attempts: t.reconnect_attempts,
            backoff_initial: Duration::from_millis(t.reconnect_backoff_ms),
            backoff_max: Duration::from_millis(t.reconnect_backoff_max_ms),
            earcons: config.audio.earcons,
            tools: s.has(crate::config::Capability::Tools),
            jitter_seed,
        }
    }
}

/// Counters published on D-Bus as `Stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub sessions: u64,
    pub reconnects: u64,
    pub last_connect_ms: Option<u64>,
    pub time_to_first_audio_ms: Option<u64>,
    pub tokens_used: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub responses: u64,
}

pub struct Machine {
    settings: Settings,
    backoff: Backoff,
    state: State,
    /// The transport in use or being tried (WebRTC may fall back to WebSocket).
    transport: TransportKind,
    /// Failed tries since the last successful connect.
    failures: u32,
    connect_started: Option<Instant>,
    connect_deadline: Option<Instant>,
    retry_at: Option<Instant>,
    session_started: Option<Instant>,
    last_activity: Instant,
    /// The service is producing a response; a second `response.create` would be refused.
    response_active: bool,
    /// A `response.create` is owed once the active response finishes.
    response_pending: bool,
    /// Assistant item whose audio is playing (for WebSocket truncation).
    playing_item: Option<String>,
    /// When the user last finished a turn, to measure time to first audio.
    turn_ended: Option<Instant>,
    /// A rollover reconnect is in progress: no earcons, no failure counting.
    rolling_over: bool,
    session_id: Option<String>,
    last_error: String,
    stats: Stats,
    out: Vec<Action>,
}

impl Machine {
    pub fn new(settings: Settings, now: Instant) -> Self {
        Machine {
            backoff: Backoff::new(
                settings.backoff_initial,
                settings.backoff_max,
                settings.jitter_seed,
            ),
            transport: settings.transport,
            settings,
            state: State::Idle,
            failures: 0,
            connect_started: None,
            connect_deadline: None,
            retry_at: None,
            session_started: None,
            last_activity: now,
            response_active: false,
            response_pending: false,
            playing_item: None,
            turn_ended: None,
            rolling_over: false,
            session_id: None,
            last_error: String::new(),
            stats: Stats::default(),
            out: Vec::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Replace timing settings (a reloaded configuration); applies from the next session on.
    pub fn update_settings(&mut self, settings: Settings) {
        if !self.state.is_active() {
            self.transport = settings.transport;
        }
        self.settings = settings;
    }

    /// The earliest time at which a [`Input::Tick`] could change something.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = [None; 4];
        deadlines[0] = self.connect_deadline;
        deadlines[1] = self.retry_at;
        if self.state.is_live() {
            deadlines[2] = self.session_started.map(|s| s + self.settings.max_session);
            if self.idle_armed() {
                deadlines[3] = self.settings.idle_timeout.map(|t| self.last_activity + t);
            }
        }
        deadlines.into_iter().flatten().min()
    }

    /// Feed one input; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        match input {
            Input::Start => self.start(now),
            Input::Stop => self.stop(StopReason::User),
            Input::Toggle => {
                if self.state.is_active() {
                    self.stop(StopReason::User)
                } else {
                    self.start(now)
                }
            }
            Input::SendText(text) => self.send_text(now, text),
            Input::Connected => self.connected(now),
            Input::ConnectFailed { reason, retry } => self.connect_failed(now, reason, retry),
            Input::Closed { reason } => self.closed(now, reason),
            Input::Server(event) => self.server_event(now, event),
            Input::ToolResult { call_id, output } => {
                if self.state.is_live() {
                    self.out.push(Action::Send(ClientEvent::FunctionOutput {
                        call_id,
                        output,
                    }));
                    self.request_response();
                }
            }
            Input::PlaybackDrained => {
                if self.state == State::Speaking {
                    self.playing_item = None;
                    self.last_activity = now;
                    self.set_state(State::Listening);
                }
            }
            Input::Tick => self.tick(now),
        }
        std::mem::take(&mut self.out)
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            // The LED first: whoever sees the new state then also sees its pattern.
            self.out.push(Action::Led(LedPattern::for_state(state)));
            self.out.push(Action::StateChanged(state));
        }
    }

    fn earcon(&mut self, earcon: Earcon) {
        if self.settings.earcons {
            self.out.push(Action::Earcon(earcon));
        }
    }

    fn set_error(&mut self, message: String) {
        if self.last_error != message {
            self.last_error = message.clone();
            self.out.push(Action::LastError(message));
        }
    }

    fn reset_conversation(&mut self) {
        self.connect_deadline = None;
        self.retry_at = None;
        self.session_started = None;
        self.response_active = false;
        self.response_pending = false;
        self.playing_item = None;
        self.turn_ended = None;
        self.rolling_over = false;
        self.session_id = None;
    }

    fn start(&mut self, now: Instant) {
        if self.state.is_active() {
            return;
        }
        self.reset_conversation();
        self.failures = 0;
        self.transport = self.settings.transport;
        self.set_error(String::new());
        self.earcon(Earcon::Start);
        self.set_state(State::Connecting);
        self.connect(now);
    }

    fn connect(&mut self, now: Instant) {
        self.retry_at = None;
        self.connect_started = Some(now);
        self.connect_deadline = Some(now + self.settings.connect_timeout);
        self.out.push(Action::Connect {
            transport: self.transport,
            attempt: self.failures + 1,
        });
    }

    fn stop(&mut self, reason: StopReason) {
        if !self.state.is_active() {
            if self.state == State::Error {
                // Stop acknowledges an error: back to a quiet LED.
                self.set_state(State::Idle);
            }
            return;
        }
        self.out.push(Action::FlushPlayback);
        self.out.push(Action::Disconnect);
        self.reset_conversation();
        self.earcon(Earcon::Stop);
        self.set_state(State::Idle);
        self.out.push(Action::SessionEnded(reason));
    }

    fn send_text(&mut self, now: Instant, text: String) {
        if !self.state.is_live() {
            return;
        }
        self.last_activity = now;
        self.turn_ended = Some(now);
        self.out.push(Action::Send(ClientEvent::UserText(text)));
        self.request_response();
    }

    /// Sequences `response.create`: at most one response is active at a time.
    fn request_response(&mut self) {
        if self.response_active {
            self.response_pending = true;
        } else {
            self.response_active = true;
            self.out.push(Action::Send(ClientEvent::ResponseCreate));
        }
    }

    fn connected(&mut self, now: Instant) {
        if !matches!(self.state, State::Connecting | State::Reconnecting) {
            // A connect that finished after Stop: close it again.
            self.out.push(Action::Disconnect);
            return;
        }
        if let Some(started) = self.connect_started.take() {
            self.stats.last_connect_ms =
                Some(now.saturating_duration_since(started).as_millis() as u64);
        }
        if !self.rolling_over {
            self.stats.sessions += 1;
        }
        self.connect_deadline = None;
        self.retry_at = None;
        self.failures = 0;
        self.rolling_over = false;
        self.session_started = Some(now);
        self.last_activity = now;
        self.set_error(String::new());
        self.out.push(Action::Send(ClientEvent::SessionUpdate));
        self.out.push(Action::StatsChanged);
        self.set_state(State::Listening);
    }

    fn connect_failed(&mut self, now: Instant, reason: String, retry: bool) {
        if !matches!(self.state, State::Connecting | State::Reconnecting) {
            return;
        }
        self.connect_deadline = None;
        self.connect_started = None;
        if !retry {
            self.fail(reason);
            return;
        }
        // WebRTC could not connect at all: try the WebSocket before backing off.
        if self.transport == TransportKind::Webrtc && self.settings.fallback {
            self.transport = TransportKind::Websocket;
            self.set_error(format!("{reason}; falling back to WebSocket"));
            self.connect(now);
            return;
        }
        self.schedule_retry(now, reason);
    }

    fn closed(&mut self, now: Instant, reason: String) {
        match self.state {
            State::Listening | State::Speaking => {
                self.out.push(Action::FlushPlayback);
                self.session_started = None;
                self.response_active = false;
                self.response_pending = false;
                self.playing_item = None;
                self.schedule_retry(now, format!("connection lost: {reason}"));
            }
            State::Connecting | State::Reconnecting => self.connect_failed(now, reason, true),
            State::Idle | State::Error => {}
        }
    }

    fn schedule_retry(&mut self, now: Instant, reason: String) {
        self.failures += 1;
        if self.failures > self.settings.reconnect_attempts {
            let tries = self.failures;
            self.fail(format!("{reason} (gave up after {tries} tries)"));
            return;
        }
        self.stats.reconnects += 1;
        self.set_error(reason);
        self.retry_at = Some(now + self.backoff.delay(self.failures));
        self.set_state(State::Reconnecting);
    }

    fn fail(&mut self, reason: String) {
        self.out.push(Action::FlushPlayback);
        self.out.push(Action::Disconnect);
        self.reset_conversation();
        self.set_error(reason);
        self.earcon(Earcon::Error);
        self.set_state(State::Error);
    }

    fn idle_armed(&self) -> bool {
        self.state == State::Listening && !self.response_active && !self.response_pending
    }

    fn tick(&mut self, now: Instant) {
        if let Some(deadline) = self.connect_deadline {
            if now >= deadline {
                let secs = self.settings.connect_timeout.as_secs_f64();
                self.out.push(Action::Disconnect);
                self.connect_failed(now, format!("connect timed out after {secs:.1} s"), true);
                return;
            }
        }
        if let Some(at) = self.retry_at {
            if now >= at && self.state == State::Reconnecting {
                // Each reconnect starts from the configured transport again: WebRTC may be back.
                self.transport = self.settings.transport;
                self.connect(now);
                return;
            }
        }
        if !self.state.is_live() {
            return;
        }
        if let Some(started) = self.session_started {
            if now.saturating_duration_since(started) >= self.settings.max_session {
                self.rollover(now);
                return;
            }
        }
        if let Some(idle) = self.settings.idle_timeout {
            if self.idle_armed() && now.saturating_duration_since(self.last_activity) >= idle {
                self.stop(StopReason::IdleTimeout);
            }
        }
    }

    /// The service caps a session's length: open a fresh one before it does.
    fn rollover(&mut self, now: Instant) {
        self.out.push(Action::Disconnect);
        self.reset_conversation();
        self.rolling_over = true;
        self.set_state(State::Connecting);
        self.connect(now);
    }

    fn server_event(&mut self, now: Instant, event: ServerEvent) {
        if !self.state.is_live() {
            return;
        }
        match event {
            ServerEvent::SessionCreated { session_id } => {
                self.session_id = Some(session_id);
                // Publishes the id along with the stats.
                self.out.push(Action::StatsChanged);
            }
            ServerEvent::SessionUpdated => {}
            ServerEvent::SpeechStarted { .. } => {
                self.last_activity = now;
                if self.state == State::Speaking || self.response_active {
                    self.barge_in();
                }
            }
            ServerEvent::SpeechStopped => {
                self.last_activity = now;
                self.turn_ended = Some(now);
            }
            ServerEvent::InputTranscript { text } => {
                self.out.push(Action::Transcript {
                    role: Role::User,
                    text,
                });
            }
            ServerEvent::ResponseCreated { .. } => self.response_active = true,
            ServerEvent::AudioStarted { item_id } => {
                self.last_activity = now;
                if let Some(ended) = self.turn_ended.take() {
                    self.stats.time_to_first_audio_ms =
                        Some(now.saturating_duration_since(ended).as_millis() as u64);
                    self.out.push(Action::StatsChanged);
                }
                if item_id.is_some() {
                    self.playing_item = item_id;
                }
                self.set_state(State::Speaking);
            }
            ServerEvent::AudioStopped => {
                self.last_activity = now;
                // WebRTC plays on the service's clock: its "stopped" means the speaker is quiet.
                // WebSocket audio may still be in our buffer; PlaybackDrained ends Speaking then.
                if self.transport == TransportKind::Webrtc && self.state == State::Speaking {
                    self.playing_item = None;
                    self.set_state(State::Listening);
                }
            }
            ServerEvent::AssistantTranscript { text } => {
                self.out.push(Action::Transcript {
                    role: Role::Assistant,
                    text,
                });
            }
            ServerEvent::FunctionCall {
                call_id,
                name,
                arguments,
            } => {
                if self.settings.tools {
                    self.out.push(Action::RunTool {
                        call_id,
                        name,
                        arguments,
                    });
                } else {
                    self.out.push(Action::Send(ClientEvent::FunctionOutput {
                        call_id,
                        output: "error: tools are disabled on this device".into(),
                    }));
                }
            }
            ServerEvent::ResponseDone { usage } => {
                self.last_activity = now;
                self.stats.responses += 1;
                if let Some(u) = usage {
                    add_usage(&mut self.stats, u);
                }
                self.out.push(Action::StatsChanged);
                self.response_active = false;
                if std::mem::take(&mut self.response_pending) {
                    self.request_response();
                }
            }
            ServerEvent::Error { code, message } => match code.as_deref() {
                // Our own sequencing lost a race with server VAD: the pending create is moot.
                Some("conversation_already_has_active_response") => self.response_active = true,
                Some("response_cancel_not_active") => {}
                Some("session_expired") => self.rollover(now),
                _ => self.set_error(format!("service error: {message}")),
            },
        }
    }

    /// The user talked over the assistant: silence the speaker now and tell the service.
    fn barge_in(&mut self) {
        self.out.push(Action::FlushPlayback);
        if self.response_active {
            self.out.push(Action::Send(ClientEvent::ResponseCancel));
        }
        match self.transport {
            TransportKind::Webrtc => self.out.push(Action::Send(ClientEvent::OutputAudioClear)),
            TransportKind::Websocket => {
                if let Some(item_id) = self.playing_item.take() {
                    self.out.push(Action::TruncatePlayed { item_id });
                }
            }
        }
        self.response_pending = false;
        self.set_state(State::Listening);
    }
}

fn add_usage(stats: &mut Stats, u: Usage) {
    stats.tokens_used += u.total_tokens;
    stats.input_tokens += u.input_tokens;
    stats.output_tokens += u.output_tokens;
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
