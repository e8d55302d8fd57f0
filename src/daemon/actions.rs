//! Carrying out what the machine decided ([`Action`]s), and turning what the daemon's own tasks
//! report ([`Internal`]) into machine inputs. Slow work (connecting, running a tool) is spawned
//! and reports back through `internal`, so the loop never waits on I/O.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Events kept for a link whose queue is full: far more than a burst of tool outputs.
const BACKLOG_LIMIT: usize = 4096;

use super::budget::local_day;
use super::{Daemon, Internal};
use crate::control::Transcript;
use crate::session::{Action, ClientEvent, Input};
use crate::transport::{Link, LinkEvent};

impl Daemon {
    pub(super) fn internal(&mut self, event: Internal) {
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
                    retry_after: error.retry_after,
                });
            }
            Internal::Link { generation, event } if generation == self.generation => match event {
                LinkEvent::Server(event) => self.feed(Input::Server(event)),
                LinkEvent::Closed { reason } => {
                    self.drop_link();
                    self.feed(Input::Closed { reason });
                }
            },
            Internal::ToolResult { call_id, output } => {
                self.feed(Input::ToolResult { call_id, output })
            }
            Internal::PlaybackDrained => self.feed(Input::PlaybackDrained),
            Internal::LocalSpeech => self.feed(Input::LocalSpeech),
            Internal::SpeakerStarted => self.feed(Input::SpeakerStarted),
            Internal::SpeakerSilenced(ms) => self.feed(Input::SpeakerSilenced { ms }),
            stale => debug!("ignoring event from an old connection: {stale:?}"),
        }
    }

    pub(super) fn act(&mut self, action: Action) {
        match action {
            Action::Connect { transport, attempt } => {
                self.generation += 1;
                self.drop_link();
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
                self.drop_link();
            }
            Action::RestoreMemory => {
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
                // Read before the flush that follows, which starts the engine's count again.
                let heard = self.parts.audio.item_heard();
                self.send(ClientEvent::Truncate {
                    item_id,
                    audio_end_ms: heard.heard_ms,
                });
                self.feed(Input::Heard {
                    heard_ms: heard.heard_ms,
                    delivered_ms: heard.delivered_ms,
                });
            }
            Action::Earcon(earcon) => self.parts.audio.play_earcon(earcon),
            Action::Led(pattern) => {
                let _ = self.led_tx.send_replace(pattern);
            }
            Action::StateChanged(state) => {
                info!(state = state.as_str(), "state changed");
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
                let _ = self.handle.transcripts.send(Transcript { role, text });
            }
            Action::Remember { role, text } => {
                if let Some(memory) = &mut self.memory {
                    if let Err(e) = memory.remember(role, &text) {
                        warn!("cannot save conversation memory: {e}");
                    }
                }
            }
            Action::Warn(message) => warn!("{message}"),
            Action::TurnTimed(t) => {
                // The words carry the values too: a plain journal line reads as well as the
                // terminal's.
                let connect = t
                    .connect_ms
                    .map_or(String::new(), |c| format!(", connect {c} ms"));
                let silence = t.time_to_silence_ms.map_or(String::new(), |s| {
                    format!(", talked over: speaker silent {s} ms after the voice began")
                });
                info!(
                    first_audio_ms = t.first_audio_ms,
                    tools_ms = t.tools_ms,
                    connect_ms = t.connect_ms,
                    time_to_silence_ms = t.time_to_silence_ms,
                    "turn: first audio at the speaker {} ms after the user's turn ended (tools {} ms{connect}{silence})",
                    t.first_audio_ms,
                    t.tools_ms
                );
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
            Action::LiveTimeSpent(spent) => {
                if let Err(e) = self.budget.spend(local_day(SystemTime::now()), spent) {
                    warn!("cannot save the daily usage: {e}");
                }
            }
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

    pub(super) fn refresh_audio_stats(&mut self) {
        let mut fresh = self.parts.audio.stats();
        fresh.queued_ms = 0;
        fresh.jitter_target_ms = 0;
        fresh.capture_frames = 0;
        let link = self.parts.connector.link_counts();
        self.snapshot_tx.send_if_modified(|s| {
            if s.audio == fresh && s.link == link {
                return false;
            }
            s.link = link;
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

    pub(super) fn send(&mut self, event: ClientEvent) {
        let Some(link) = &self.link else {
            debug!("no link for {event:?}");
            return;
        };
        // Order is kept: once events wait, the new one waits behind them.
        if !self.backlog.is_empty() {
            self.queue(event);
            return;
        }
        match link.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.queue(event),
            Err(mpsc::error::TrySendError::Closed(event)) => {
                debug!("the link closed before {event:?}")
            }
        }
    }

    /// Keeps an event for the link until its queue has room (the loop sends it then). Bounded:
    /// a link that takes nothing for this long is stuck, and its health check will end it.
    fn queue(&mut self, event: ClientEvent) {
        if self.backlog.len() >= BACKLOG_LIMIT {
            warn!("the connection takes no events; dropping {event:?}");
            return;
        }
        self.backlog.push_back(event);
    }

    /// A new or no link: what waited for the old one is moot.
    pub(super) fn drop_link(&mut self) {
        self.link = None;
        self.backlog.clear();
    }
}
