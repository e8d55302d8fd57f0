//! What the machine does while connected: the service's events, one response at a time, tool
//! calls, and the user talking over the assistant.

use std::time::{Duration, Instant};

use super::events::{ClientEvent, ResponseOutcome, Role, ServerEvent, Usage};
use super::machine::Machine;
use super::types::{Action, BargeIn, Heard, LedPattern, State, Stats};
use crate::config::TransportKind;

/// How long the LED flashes the error pattern when one answer fails but the conversation goes on.
const ERROR_FLASH: Duration = Duration::from_millis(1500);
/// Speech rate used to guess how much of a transcript was heard when only the playing time is
/// known (WebRTC plays on the service's side): about 150 words a minute.
const CHARS_PER_SECOND: u64 = 15;

impl Machine {
    pub(super) fn send_text(&mut self, now: Instant, text: String) {
        if !self.state.is_live() {
            return;
        }
        self.last_activity = now;
        self.turn_ended = Some(now);
        self.out.push(Action::Send(ClientEvent::UserText(text)));
        if self.settings.rules.text_needs_response {
            self.request_response();
        }
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
                    text: text.clone(),
                });
                self.out.push(Action::Remember {
                    role: Role::User,
                    text,
                });
            }
            ServerEvent::ResponseCreated { .. } => {
                self.response_active = true;
                // A cut that no transcript claimed belongs to an earlier answer.
                self.cut = None;
            }
            ServerEvent::AudioStarted { item_id } => {
                self.last_activity = now;
                self.user_turn_over();
                // Timed when the audio reaches the speaker (`Input::SpeakerStarted`).
                if let Some(ended) = self.turn_ended.take() {
                    self.turns.awaiting_audio = Some(ended);
                }
                if item_id.is_some() && item_id != self.playing_item {
                    // A new item: the one before it played out whole.
                    self.remember_heard_in_full();
                    self.playing_item = item_id;
                }
                if self.state != State::Speaking {
                    self.speaking_since = Some(now);
                }
                self.set_state(State::Speaking);
            }
            ServerEvent::AudioStopped { interrupted } => {
                self.last_activity = now;
                // WebRTC plays on the service's clock: its "stopped" means the speaker is quiet.
                // WebSocket audio may still be in our buffer; PlaybackDrained ends Speaking then.
                let ends = self.transport == TransportKind::Webrtc
                    || self.settings.rules.audio_end_from_link;
                if ends && self.state == State::Speaking {
                    if interrupted {
                        let heard = self.heard_so_far(now);
                        self.interrupted(heard);
                    } else {
                        self.remember_heard_in_full();
                    }
                    self.playing_item = None;
                    self.set_state(State::Listening);
                }
            }
            ServerEvent::AssistantTranscript { text } => {
                self.out.push(Action::Transcript {
                    role: Role::Assistant,
                    text: text.clone(),
                });
                // Memory keeps what the user heard: wait until the audio has played (or was
                // cut) before deciding how much of the text that was.
                if let Some(cut) = self.cut.take() {
                    self.remember_cut(&text, cut);
                } else if self.state == State::Speaking {
                    self.pending_transcript = Some(text);
                } else {
                    self.out.push(Action::Remember {
                        role: Role::Assistant,
                        text,
                    });
                }
            }
            ServerEvent::FunctionCall {
                call_id,
                name,
                arguments,
            } => {
                self.user_turn_over();
                // The service may repeat an item's completion (`output_item.done` after a
                // reconnect, say); a call runs once.
                if self.called.contains(&call_id) {
                    return;
                }
                self.called.push(call_id.clone());
                if self.settings.tools {
                    self.turns.tools_started.push((call_id.clone(), now));
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
            ServerEvent::ResponseDone { usage, outcome } => {
                self.last_activity = now;
                self.stats.responses += 1;
                if let Some(u) = usage {
                    add_usage(&mut self.stats, u);
                }
                if let ResponseOutcome::Failed(why) | ResponseOutcome::Incomplete(why) = outcome {
                    // One answer failed; the conversation goes on. Say so on every surface.
                    self.stats.responses_failed += 1;
                    self.set_error(format!("the service could not answer: {why}"));
                    self.earcon(super::types::Earcon::Error);
                    self.out.push(Action::Led(LedPattern::FastBlink));
                    self.led_restore_at = Some(now + ERROR_FLASH);
                }
                self.out.push(Action::StatsChanged);
                self.response_active = false;
                if std::mem::take(&mut self.response_pending) {
                    self.request_response();
                }
            }
            ServerEvent::TranscriptionFailed { message } => {
                self.stats.transcription_failures += 1;
                self.out.push(Action::StatsChanged);
                self.out.push(Action::Warn(format!(
                    "the service could not transcribe what was said: {message}"
                )));
            }
            ServerEvent::TranscriptPiece { role, text } => self.transcript_piece(now, role, &text),
            ServerEvent::SecondsUsed(seconds) => self.seconds_used(seconds),
            ServerEvent::Delegated { delegation_id } => self.delegated(delegation_id),
            ServerEvent::SessionClosed {
                expired,
                reason,
                seconds,
            } => {
                if let Some(seconds) = seconds {
                    self.seconds_used(seconds);
                }
                self.session_closed(now, expired, &reason)
            }
            ServerEvent::Error {
                code,
                message,
                about,
            } => match code.as_deref() {
                // Our create lost a race with one the service started itself (server VAD):
                // that one is active now, and ours is owed once it ends.
                Some("conversation_already_has_active_response") => {
                    self.response_active = true;
                    self.response_pending = true;
                }
                Some("response_cancel_not_active") => {}
                Some("session_expired") => self.rollover(now),
                _ => match about {
                    Some(about) => {
                        self.set_error(format!("service error about {about}: {message}"))
                    }
                    None => self.set_error(format!("service error: {message}")),
                },
            },
        }
    }

    /// The user talked over the assistant: silence the speaker now and tell the service.
    pub(super) fn barge_in(&mut self) {
        if self.settings.rules.barge_in == BargeIn::Model {
            // The model heard the user and stops itself; what is queued here is already stale.
            self.out.push(Action::FlushPlayback);
            self.set_state(State::Listening);
            return;
        }
        // WebSocket: what was heard of the item is read before the flush, which starts the
        // engine's count again.
        let truncate = match self.transport {
            TransportKind::Websocket => self.playing_item.take(),
            TransportKind::Webrtc => None,
        };
        if let Some(item_id) = truncate {
            self.out.push(Action::TruncatePlayed { item_id });
        } else if self.state == State::Speaking {
            // WebRTC (or WebSocket audio already drained): only the playing time is known.
            let heard = self.heard_so_far(self.now);
            self.interrupted(heard);
        }
        self.out.push(Action::FlushPlayback);
        if self.response_active {
            self.out.push(Action::Send(ClientEvent::ResponseCancel));
        }
        if self.transport == TransportKind::Webrtc {
            self.out.push(Action::Send(ClientEvent::OutputAudioClear));
        }
        self.response_pending = false;
        self.set_state(State::Listening);
    }

    /// What the daemon measured of a truncated WebSocket item.
    pub(super) fn heard(&mut self, heard_ms: u32, delivered_ms: u32) {
        self.interrupted(Heard {
            heard_ms,
            delivered_ms: Some(delivered_ms),
        });
    }

    pub(super) fn heard_so_far(&self, now: Instant) -> Heard {
        let playing = self
            .speaking_since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        Heard {
            heard_ms: u32::try_from(playing.as_millis()).unwrap_or(u32::MAX),
            delivered_ms: None,
        }
    }

    /// The answer was cut: remember its heard part now if its text is here, or once it comes.
    pub(super) fn interrupted(&mut self, heard: Heard) {
        match self.pending_transcript.take() {
            Some(text) => self.remember_cut(&text, heard),
            None => self.cut = Some(heard),
        }
    }

    /// The answer played out whole.
    pub(super) fn remember_heard_in_full(&mut self) {
        if let Some(text) = self.pending_transcript.take() {
            self.out.push(Action::Remember {
                role: Role::Assistant,
                text,
            });
        }
    }

    fn remember_cut(&mut self, text: &str, heard: Heard) {
        if let Some(part) = heard_part(text, heard) {
            self.out.push(Action::Remember {
                role: Role::Assistant,
                text: part,
            });
        }
    }
}

/// The start of `text` the user heard, cut at a word and marked as cut; `None` when nothing.
fn heard_part(text: &str, heard: Heard) -> Option<String> {
    let total = text.chars().count() as u64;
    let chars = match heard.delivered_ms {
        Some(delivered) if delivered > 0 => {
            total * u64::from(heard.heard_ms.min(delivered)) / u64::from(delivered)
        }
        _ => u64::from(heard.heard_ms) * CHARS_PER_SECOND / 1000,
    };
    if chars >= total {
        return Some(text.to_owned());
    }
    let end = text
        .char_indices()
        .nth(chars as usize)
        .map_or(text.len(), |(i, _)| i);
    let cut = text[..end]
        .rfind(char::is_whitespace)
        .map_or("", |i| &text[..i])
        .trim_end();
    (!cut.is_empty()).then(|| format!("{cut}…"))
}

fn add_usage(stats: &mut Stats, u: Usage) {
    stats.tokens_used += u.total_tokens;
    stats.input_tokens += u.input_tokens;
    stats.output_tokens += u.output_tokens;
}
