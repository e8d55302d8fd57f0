//! The Realtime API as it went GA (`session.type = "realtime"`, `response.output_audio.*`).

use std::sync::Arc;

use serde_json::{json, Value};
use tracing::debug;

use super::event_ids::EventIds;
use super::realtime_wire::*;
use super::{
    checked_id, function_tools, websocket_base, CallReply, CallRequest, Decoded, Dialect,
    WS_PCM_RATE,
};
use crate::config::{Capability, Config, TransportKind, TurnDetectionKind};
use crate::provided::ProvidedTools;
use crate::session::{ClientEvent, Role, ServerEvent, Usage};

/// The Realtime API, GA shape (`session.type = "realtime"`, `response.output_audio.*`).
pub struct RealtimeGa {
    config: Arc<Config>,
    transport: TransportKind,
    ids: EventIds,
    provided: Arc<ProvidedTools>,
}

impl RealtimeGa {
    pub fn new(config: Arc<Config>, transport: TransportKind) -> Self {
        RealtimeGa {
            config,
            transport,
            ids: EventIds::default(),
            provided: Arc::default(),
        }
    }

    /// Offers the tools programs register on the bus too, read each time a session object is built.
    pub fn with_provided(mut self, provided: Arc<ProvidedTools>) -> Self {
        self.provided = provided;
        self
    }

    /// The tools' part of a session object: `tools` and `tool_choice`; nothing when there are none.
    fn add_tools(&self, session: &mut Value) {
        let tools = function_tools(&self.config, &self.provided);
        if !tools.is_empty() {
            session["tools"] = Value::Array(tools);
            session["tool_choice"] = json!("auto");
        }
    }

    /// The `session` object of `session.update`. `with_format` adds the PCM formats, which only
    /// the WebSocket sets (WebRTC negotiates Opus in the SDP).
    pub fn session_object(&self, with_format: bool) -> Value {
        let s = &self.config.session;
        let instructions = s.full_instructions();
        let modalities = if s.has(Capability::Audio) {
            ["audio"]
        } else {
            ["text"]
        };

        let td = &s.turn_detection;
        let turn_detection = match td.kind {
            TurnDetectionKind::ServerVad => json!({
                "type": "server_vad",
                "threshold": td.threshold,
                "prefix_padding_ms": td.prefix_padding_ms,
                "silence_duration_ms": td.silence_duration_ms,
                "create_response": true,
                "interrupt_response": true,
            }),
            // Semantic VAD decides the end of a turn from meaning; it takes no level or timing.
            TurnDetectionKind::SemanticVad => json!({
                "type": "semantic_vad",
                "create_response": true,
                "interrupt_response": true,
            }),
        };
        let mut input = json!({ "turn_detection": turn_detection });
        let mut output = json!({ "voice": s.voice });
        if with_format {
            let format = json!({"type": "audio/pcm", "rate": WS_PCM_RATE});
            input["format"] = format.clone();
            output["format"] = format;
        }
        if self.config.audio.noise_suppression {
            input["noise_reduction"] = json!({"type": "far_field"});
        }
        if !s.transcription_model.trim().is_empty() {
            input["transcription"] = json!({"model": s.transcription_model});
        }

        let mut session = json!({
            "type": "realtime",
            "model": self.config.api.model(),
            "instructions": instructions,
            "output_modalities": modalities,
            "audio": {"input": input, "output": output},
        });
        self.add_tools(&mut session);
        session
    }
}

impl Dialect for RealtimeGa {
    fn encode(&self, event: &ClientEvent) -> Vec<String> {
        let mut value = match event {
            ClientEvent::SessionUpdate => json!({
                "type": "session.update",
                "session": self.session_object(self.transport == TransportKind::Websocket),
            }),
            // Only the tools: the rest of a running session (its voice above all) stays as is.
            ClientEvent::ToolsUpdate => {
                if !self.config.session.has(Capability::Tools) {
                    return Vec::new();
                }
                let tools = function_tools(&self.config, &self.provided);
                let mut session = json!({"type": "realtime", "tools": tools});
                if !tools.is_empty() {
                    session["tool_choice"] = json!("auto");
                }
                json!({"type": "session.update", "session": session})
            }
            ClientEvent::UserText(text) => json!({
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            }),
            ClientEvent::HistoryItem { role, text } => {
                let kind = match role {
                    Role::User => "input_text",
                    Role::Assistant => "output_text",
                };
                json!({
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": role.as_str(),
                        "content": [{"type": kind, "text": text}],
                    },
                })
            }
            ClientEvent::ResponseCreate => json!({"type": "response.create"}),
            ClientEvent::ResponseCancel => json!({"type": "response.cancel"}),
            ClientEvent::OutputAudioClear => json!({"type": "output_audio_buffer.clear"}),
            ClientEvent::Truncate {
                item_id,
                audio_end_ms,
            } => json!({
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms,
            }),
            ClientEvent::FunctionOutput { call_id, output } => json!({
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": output},
            }),
            // GPT-Live's alone.
            ClientEvent::DelegationDeclined { .. } => return Vec::new(),
        };
        let kind = match event {
            ClientEvent::SessionUpdate | ClientEvent::ToolsUpdate => "session.update",
            ClientEvent::UserText(_)
            | ClientEvent::HistoryItem { .. }
            | ClientEvent::FunctionOutput { .. } => "conversation.item.create",
            ClientEvent::ResponseCreate => "response.create",
            ClientEvent::ResponseCancel => "response.cancel",
            ClientEvent::OutputAudioClear => "output_audio_buffer.clear",
            ClientEvent::Truncate { .. } => "conversation.item.truncate",
            ClientEvent::DelegationDeclined { .. } => return Vec::new(),
        };
        value["event_id"] = Value::String(self.ids.issue(kind));
        vec![value.to_string()]
    }

    fn decode<'a>(&self, text: &'a str) -> Decoded<'a> {
        super::decode_by_type(text, |kind, text| self.decode_typed(kind, text))
    }

    fn encode_audio_append(&self, pcm: &[i16], scratch: &mut Vec<u8>, out: &mut String) {
        super::write_audio_event("input_audio_buffer.append", &self.ids, pcm, scratch, out);
    }

    fn websocket_url(&self, base_url: &str) -> Result<url::Url, String> {
        let mut url = websocket_base(base_url, "realtime")?;
        url.query_pairs_mut()
            .append_pair("model", self.config.api.model());
        Ok(url)
    }

    fn websocket_start(&self) -> Option<String> {
        None
    }

    fn call_request(&self, offer: &str) -> CallRequest {
        CallRequest {
            path: "realtime/calls".into(),
            content_type: "application/sdp",
            body: offer.to_owned(),
        }
    }

    fn call_answer(&self, reply: &CallReply) -> Result<(String, Option<String>), String> {
        if reply.content_type != "application/sdp" {
            return Err(format!(
                "answered with content type `{}` instead of application/sdp",
                crate::transport::error::one_line(&reply.content_type, 60)
            ));
        }
        let call_id = reply.location.as_deref().and_then(call_id_from_location);
        Ok((reply.body.clone(), call_id))
    }

    fn hangup_path(&self, call_id: &str) -> Option<String> {
        Some(format!("realtime/calls/{call_id}/hangup"))
    }

    fn awaits_start(&self) -> bool {
        false
    }

    fn closing(&self) -> Option<String> {
        None
    }

    fn reports_playout(&self) -> bool {
        true
    }
}

impl RealtimeGa {
    /// The session configuration used when minting an ephemeral token (transport-neutral:
    /// the audio format is left to the transport's own `session.update` or SDP).
    pub fn token_session(&self) -> Value {
        self.session_object(false)
    }
}

/// `Location: /v1/realtime/calls/rtc_123` → `rtc_123`.
pub fn call_id_from_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?.trim_end_matches('/');
    checked_id(path.rsplit('/').next()?)
}

impl RealtimeGa {
    /// `Ok(None)`: a type the daemon does not act on.
    fn decode_typed<'a>(
        &self,
        kind: &str,
        text: &'a str,
    ) -> Result<Option<Decoded<'a>>, serde_json::Error> {
        let webrtc = self.transport == TransportKind::Webrtc;
        let event = match kind {
            "session.created" => {
                let e: WithSession = serde_json::from_str(text)?;
                ServerEvent::SessionCreated {
                    session_id: e.session.id.unwrap_or_default(),
                }
            }
            "session.updated" => ServerEvent::SessionUpdated,
            "input_audio_buffer.speech_started" => {
                let e: WithItem = serde_json::from_str(text)?;
                ServerEvent::SpeechStarted { item_id: e.item_id }
            }
            "input_audio_buffer.speech_stopped" => ServerEvent::SpeechStopped,
            "conversation.item.input_audio_transcription.completed" => {
                let e: WithTranscript = serde_json::from_str(text)?;
                ServerEvent::InputTranscript { text: e.transcript }
            }
            "response.created" => {
                let e: WithResponse = serde_json::from_str(text)?;
                ServerEvent::ResponseCreated {
                    response_id: e.response.id.unwrap_or_default(),
                }
            }
            "response.output_audio.delta" | "response.audio.delta" => {
                let e: AudioDelta<'a> = serde_json::from_str(text)?;
                return Ok(Some(Decoded::AudioDelta {
                    item_id: e.item_id,
                    base64: e.delta,
                }));
            }
            // WebRTC: the service's playout buffer is the speaker; its start and end are what
            // matter. The end of generation comes earlier and means nothing for playback there.
            "output_audio_buffer.started" => {
                let e: WithItem = serde_json::from_str(text)?;
                ServerEvent::AudioStarted {
                    item_id: e.item_id.or(e.response_id),
                }
            }
            "output_audio_buffer.stopped" => ServerEvent::AudioStopped { interrupted: false },
            "output_audio_buffer.cleared" => ServerEvent::AudioStopped { interrupted: true },
            "response.output_audio.done" | "response.audio.done" if !webrtc => {
                ServerEvent::AudioStopped { interrupted: false }
            }
            "response.output_audio_transcript.done"
            | "response.audio_transcript.done"
            | "response.output_text.done"
            | "response.text.done" => {
                let e: TranscriptOrText = serde_json::from_str(text)?;
                ServerEvent::AssistantTranscript {
                    text: e.transcript.or(e.text).unwrap_or_default(),
                }
            }
            // A call runs only once its item is complete: `function_call_arguments.done` also
            // comes for interrupted and cancelled responses (as the official SDKs read it).
            "response.output_item.done" => {
                let e: WithOutputItem = serde_json::from_str(text)?;
                match e.item {
                    OutputItem::FunctionCall {
                        call_id,
                        name,
                        arguments,
                        status,
                    } if status.as_deref() == Some("completed") => ServerEvent::FunctionCall {
                        call_id,
                        name,
                        arguments,
                    },
                    OutputItem::FunctionCall { name, status, .. } => {
                        debug!(tool = %name, ?status, "not running a function call that did not complete");
                        return Ok(None);
                    }
                    OutputItem::Other => return Ok(None),
                }
            }
            "response.done" => {
                let e: WithResponse = serde_json::from_str(text)?;
                ServerEvent::ResponseDone {
                    usage: e.response.usage.map(|u| Usage {
                        input_tokens: u.input_tokens,
                        output_tokens: u.output_tokens,
                        total_tokens: u.total_tokens,
                    }),
                    outcome: outcome(e.response.status.as_deref(), e.response.status_details),
                }
            }
            "conversation.item.input_audio_transcription.failed" => {
                let e: ErrorEvent = serde_json::from_str(text)?;
                ServerEvent::TranscriptionFailed {
                    message: e.error.describe(),
                }
            }
            "error" => {
                let e: ErrorEvent = serde_json::from_str(text)?;
                ServerEvent::Error {
                    about: e
                        .error
                        .event_id
                        .as_deref()
                        .map(|id| self.ids.describe(id, "input_audio_buffer.append")),
                    code: e.error.code.clone().or(e.error.kind.clone()),
                    message: e.error.message,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Decoded::Event(event)))
    }
}

#[cfg(test)]
#[path = "realtime_tests.rs"]
mod tests;
