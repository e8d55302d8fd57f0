//! The life of a conversation as a plain state machine: inputs in, actions out.
//!
//! It owns no socket, no sound card and no clock. Every input comes with the current time, and
//! [`Machine::next_deadline`] says when it next wants a [`Input::Tick`]; the daemon's event loop
//! (see `daemon/`) does the waiting and carries out the [`Action`]s. That keeps every rule of
//! the conversation (reconnects, timeouts, the daily budget, barge-in, one response at a time)
//! testable in microseconds without any I/O.
//!
//! This file is the connection's life (connect, retry, roll over, stop, the timers);
//! `conversation.rs` is what happens while connected (the service's events, responses,
//! barge-in); `types.rs` names the inputs, actions and states.

use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::events::ClientEvent;
use super::types::{Action, Earcon, Heard, Input, LedPattern, Settings, State, Stats, StopReason};
use crate::config::TransportKind;

pub struct Machine {
    pub(super) settings: Settings,
    pub(super) backoff: Backoff,
    pub(super) state: State,
    /// The transport in use or being tried (WebRTC may fall back to WebSocket).
    pub(super) transport: TransportKind,
    /// Failed tries since the last successful connect.
    pub(super) failures: u32,
    pub(super) connect_started: Option<Instant>,
    pub(super) connect_deadline: Option<Instant>,
    pub(super) retry_at: Option<Instant>,
    pub(super) session_started: Option<Instant>,
    pub(super) last_activity: Instant,
    /// The service is producing a response; a second `response.create` would be refused.
    pub(super) response_active: bool,
    /// A `response.create` is owed once the active response finishes.
    pub(super) response_pending: bool,
    /// Assistant item whose audio is playing (for WebSocket truncation).
    pub(super) playing_item: Option<String>,
    /// When the user last finished a turn, to measure time to first audio.
    pub(super) turn_ended: Option<Instant>,
    /// A rollover reconnect is in progress: no earcons, no failure counting.
    pub(super) rolling_over: bool,
    pub(super) session_id: Option<String>,
    pub(super) last_error: String,
    pub(super) stats: Stats,
    pub(super) out: Vec<Action>,
    /// The time of the input being handled, for bookkeeping that has no `now` of its own.
    pub(super) now: Instant,
    /// Today's conversation time left when the current live stretch began; `None`: no limit.
    pub(super) budget_left: Option<Duration>,
    /// When the current live stretch began.
    pub(super) live_since: Option<Instant>,
    /// Function calls already run in this conversation (the service may repeat a completion).
    pub(super) called: Vec<String>,
    /// The assistant's transcript, kept until we know how much of its audio was heard.
    pub(super) pending_transcript: Option<String>,
    /// An interruption whose transcript has not come yet.
    pub(super) cut: Option<Heard>,
    /// When the assistant's audio began to play.
    pub(super) speaking_since: Option<Instant>,
    /// When the LED goes back to the state's pattern after an error flash.
    pub(super) led_restore_at: Option<Instant>,
    /// Transcript pieces of the turn in progress, the user's and the assistant's (GPT-Live).
    pub(super) pieces: super::types::Pieces,
    /// Where each turn's seconds go (`turns.rs`).
    pub(super) turns: super::turn_clock::TurnClock,
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
            now,
            budget_left: None,
            live_since: None,
            called: Vec::new(),
            pending_transcript: None,
            cut: None,
            speaking_since: None,
            led_restore_at: None,
            pieces: Default::default(),
            turns: Default::default(),
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
        let mut deadlines = [None; 6];
        deadlines[5] = self.led_restore_at;
        deadlines[0] = self.connect_deadline;
        deadlines[1] = self.retry_at;
        if self.state.is_live() {
            deadlines[2] = self.session_started.map(|s| s + self.settings.max_session);
            if self.idle_armed() {
                deadlines[3] = self.settings.idle_timeout.map(|t| self.last_activity + t);
            }
            deadlines[4] = self.budget_deadline();
        }
        deadlines.into_iter().flatten().min()
    }

    /// Feed one input; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        self.now = now;
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
            Input::ConnectFailed {
                reason,
                retry,
                retry_after,
            } => self.connect_failed(now, reason, retry, retry_after),
            Input::Closed { reason } => self.closed(now, reason),
            Input::Server(event) => self.server_event(now, event),
            Input::ToolResult { call_id, output } => {
                self.tool_finished(now, &call_id);
                if self.state.is_live() {
                    self.out.push(Action::Send(ClientEvent::FunctionOutput {
                        call_id,
                        output,
                    }));
                    self.request_response();
                }
            }
            Input::PlaybackDrained => {
                if self.state == State::Speaking && !self.settings.rules.audio_end_from_link {
                    self.remember_heard_in_full();
                    self.playing_item = None;
                    self.last_activity = now;
                    self.set_state(State::Listening);
                }
            }
            Input::SpeakerStarted => self.speaker_started(now),
            Input::SpeakerSilenced { ms } => self.silenced(ms),
            Input::LocalSpeech => {
                self.silencing();
                if self.state == State::Speaking || self.response_active {
                    self.barge_in();
                } else {
                    // Nothing of ours was talking: let the engine play again.
                    self.out.push(Action::FlushPlayback);
                }
            }
            Input::BudgetLeft(left) => self.budget_left = left,
            Input::ToolsChanged => {
                // A session still connecting gets them with its first update.
                if self.state.is_live() && !self.settings.rules.configured_on_open {
                    self.out.push(Action::Send(ClientEvent::ToolsUpdate));
                }
            }
            Input::Heard {
                heard_ms,
                delivered_ms,
            } => self.heard(heard_ms, delivered_ms),
            Input::Tick => self.tick(now),
        }
        std::mem::take(&mut self.out)
    }

    pub(super) fn set_state(&mut self, state: State) {
        if self.state == State::Speaking && state != State::Speaking {
            self.assistant_turn_over();
            self.answer_ended(!state.is_live());
        } else if self.state != state && !state.is_live() {
            self.answer_ended(true);
        }
        if self.state != state {
            match (self.state.is_live(), state.is_live()) {
                (false, true) => self.live_since = Some(self.now),
                (true, false) => self.end_live_stretch(),
                _ => {}
            }
            self.led_restore_at = None;
            self.state = state;
            // The LED first: whoever sees the new state then also sees its pattern.
            self.out.push(Action::Led(LedPattern::for_state(state)));
            self.out.push(Action::StateChanged(state));
        }
    }

    /// Books a finished live stretch: the daemon keeps the day's total, the machine what is
    /// left of it for the rest of this conversation.
    fn end_live_stretch(&mut self) {
        if let Some(since) = self.live_since.take() {
            let spent = self.now.saturating_duration_since(since);
            self.budget_left = self.budget_left.map(|left| left.saturating_sub(spent));
            self.out.push(Action::LiveTimeSpent(spent));
        }
    }

    /// When today's conversation time runs out, while live under a daily limit.
    fn budget_deadline(&self) -> Option<Instant> {
        Some(self.live_since? + self.budget_left?)
    }

    pub(super) fn earcon(&mut self, earcon: Earcon) {
        if self.settings.earcons {
            self.out.push(Action::Earcon(earcon));
        }
    }

    pub(super) fn set_error(&mut self, message: String) {
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
        self.called.clear();
        self.pending_transcript = None;
        self.cut = None;
        self.speaking_since = None;
        self.pieces = Default::default();
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

    pub(super) fn connect(&mut self, now: Instant) {
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
        if self.state == State::Speaking {
            // Cut off by the stop: keep what was heard of the answer.
            let heard = self.heard_so_far(self.now);
            self.interrupted(heard);
        }
        self.out.push(Action::FlushPlayback);
        self.out.push(Action::Disconnect);
        self.reset_conversation();
        self.earcon(Earcon::Stop);
        self.set_state(State::Idle);
        self.out.push(Action::SessionEnded(reason));
    }

    fn connected(&mut self, now: Instant) {
        if !matches!(self.state, State::Connecting | State::Reconnecting) {
            // A connect that finished after Stop: close it again.
            self.out.push(Action::Disconnect);
            return;
        }
        if let Some(started) = self.connect_started.take() {
            self.connect_timed(now.saturating_duration_since(started).as_millis() as u64);
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
        self.pieces.seconds_seen = 0.0;
        if !self.settings.rules.configured_on_open {
            self.out.push(Action::Send(ClientEvent::SessionUpdate));
        }
        self.out.push(Action::RestoreMemory);
        self.out.push(Action::StatsChanged);
        self.set_state(State::Listening);
    }

    fn connect_failed(
        &mut self,
        now: Instant,
        reason: String,
        retry: bool,
        retry_after: Option<Duration>,
    ) {
        if !matches!(self.state, State::Connecting | State::Reconnecting) {
            return;
        }
        self.connect_deadline = None;
        self.connect_started = None;
        if !retry {
            self.fail(reason);
            return;
        }
        // WebRTC could not connect at all: try the WebSocket before backing off (unless the
        // service asked us to wait).
        if self.transport == TransportKind::Webrtc
            && self.settings.fallback
            && retry_after.is_none()
        {
            self.transport = TransportKind::Websocket;
            self.set_error(format!("{reason}; falling back to WebSocket"));
            self.connect(now);
            return;
        }
        self.schedule_retry(now, reason, retry_after);
    }

    fn closed(&mut self, now: Instant, reason: String) {
        match self.state {
            State::Listening | State::Speaking => {
                self.out.push(Action::FlushPlayback);
                self.session_started = None;
                self.response_active = false;
                self.response_pending = false;
                self.playing_item = None;
                self.schedule_retry(now, format!("connection lost: {reason}"), None);
            }
            State::Connecting | State::Reconnecting => self.connect_failed(now, reason, true, None),
            State::Idle | State::Error => {}
        }
    }

    fn schedule_retry(&mut self, now: Instant, reason: String, at_least: Option<Duration>) {
        self.failures += 1;
        if self.failures > self.settings.reconnect_attempts {
            let tries = self.failures;
            self.fail(format!("{reason} (gave up after {tries} tries)"));
            return;
        }
        self.stats.reconnects += 1;
        // Published as it happens: a user watching a device that cannot connect sees it.
        self.out.push(Action::StatsChanged);
        self.set_error(reason);
        let delay = self.backoff.delay(self.failures);
        self.retry_at = Some(now + at_least.map_or(delay, |wait| delay.max(wait)));
        self.set_state(State::Reconnecting);
    }

    pub(super) fn fail(&mut self, reason: String) {
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
        if self.led_restore_at.is_some_and(|at| now >= at) {
            self.led_restore_at = None;
            self.out
                .push(Action::Led(LedPattern::for_state(self.state)));
        }
        if let Some(deadline) = self.connect_deadline {
            if now >= deadline {
                let secs = self.settings.connect_timeout.as_secs_f64();
                self.out.push(Action::Disconnect);
                self.connect_failed(
                    now,
                    format!("connect timed out after {secs:.1} s"),
                    true,
                    None,
                );
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
        if self.budget_deadline().is_some_and(|at| now >= at) {
            self.stop(StopReason::DailyLimit);
            self.set_error(
                "stopped: today's conversation time (session.daily_limit_s) is used up".into(),
            );
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
    pub(super) fn rollover(&mut self, now: Instant) {
        self.out.push(Action::Disconnect);
        self.reset_conversation();
        self.rolling_over = true;
        self.set_state(State::Connecting);
        self.connect(now);
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
