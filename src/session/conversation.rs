//! What the machine does while connected: the service's events, one response at a time, tool
//! calls, and the user talking over the assistant.

use std::time::Instant;

use super::events::{ClientEvent, Role, ServerEvent, Usage};
use super::machine::Machine;
use super::types::{Action, State, Stats};
use crate::config::TransportKind;

impl Machine {
    pub(super) fn send_text(&mut self, now: Instant, text: String) {
        if !self.state.is_live() {
            return;
        }
        self.last_activity = now;
        self.turn_ended = Some(now);
        self.out.push(Action::Send(ClientEvent::UserText(text)));
        self.request_response();
    }

    /// Sequences `response.create`: at most one response is active at a time.
    pub(super) fn request_response(&mut self) {
        if self.response_active {
            self.response_pending = true;
        } else {
            self.response_active = true;
            self.out.push(Action::Send(ClientEvent::ResponseCreate));
        }
    }

    pub(super) fn server_event(&mut self, now: Instant, event: ServerEvent) {
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
    pub(super) fn barge_in(&mut self) {
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
