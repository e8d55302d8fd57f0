//! Wire dialects: how [`ClientEvent`]s become JSON text and JSON text becomes [`ServerEvent`]s.
//!
//! Transports move text and audio; the dialect alone knows the service's vocabulary. Today that is
//! the Realtime API as it went GA ([`RealtimeGa`]); another API (GPT-Live) is one more
//! implementation of [`Dialect`], with no change to the transports or the state machine.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::debug;

use crate::config::{Capability, Config, TransportKind, TurnDetectionKind};
use crate::session::{ClientEvent, Role, ServerEvent, Usage};

/// The sample rate of PCM audio carried inside WebSocket events.
pub const WS_PCM_RATE: u32 = 24_000;

/// One decoded server message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// Something the state machine acts on.
    Event(ServerEvent),
    /// Assistant audio, base64 PCM16 mono at [`WS_PCM_RATE`] (WebSocket only). The transport
    /// reports [`ServerEvent::AudioStarted`] for the first delta of each item: the dialect keeps
    /// no state.
    AudioDelta {
        item_id: Option<Cow<'a, str>>,
        base64: Cow<'a, str>,
    },
    /// A well-formed event the daemon has no use for (its type).
    Ignored(Cow<'a, str>),
    /// Not JSON, or an event whose fields do not parse: why, in one line.
    Malformed(String),
}

/// Translates between the daemon's events and one API's JSON.
pub trait Dialect: Send + Sync {
    /// JSON text of a client event; `SessionUpdate` carries the whole session from the config.
    fn encode(&self, event: &ClientEvent) -> String;

    /// Parses one server message. Never fails: bad input becomes [`Decoded::Malformed`].
    fn decode<'a>(&self, text: &'a str) -> Decoded<'a>;

    /// Writes the JSON text of an event appending PCM16 mono at [`WS_PCM_RATE`] to the input
    /// buffer (WebSocket). `out` is cleared first; callers reuse it so the hot path does not
    /// allocate once it has grown.
    fn encode_audio_append(&self, pcm: &[i16], scratch: &mut Vec<u8>, out: &mut String);

    /// The session configuration used when minting an ephemeral token (transport-neutral:
    /// the audio format is left to the transport's own `session.update` or SDP).
    fn token_session(&self) -> Value;
}

/// The Realtime API, GA shape (`session.type = "realtime"`, `response.output_audio.*`).
pub struct RealtimeGa {
    config: Arc<Config>,
    transport: TransportKind,
}

impl RealtimeGa {
    pub fn new(config: Arc<Config>, transport: TransportKind) -> Self {
        RealtimeGa { config, transport }
    }

    /// The `session` object of `session.update`. `with_format` adds the PCM formats, which only
    /// the WebSocket sets (WebRTC negotiates Opus in the SDP).
    pub fn session_object(&self, with_format: bool) -> Value {
        let s = &self.config.session;
        let instructions = [s.persona.trim(), s.instructions.trim()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n\n");
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
            "model": self.config.api.model,
            "instructions": instructions,
            "output_modalities": modalities,
            "audio": {"input": input, "output": output},
        });
        if s.has(Capability::Tools) && !s.tools.is_empty() {
            let tools: Vec<Value> = s
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    })
                })
                .collect();
            session["tools"] = Value::Array(tools);
            session["tool_choice"] = json!("auto");
        }
        session
    }
}

impl Dialect for RealtimeGa {
    fn encode(&self, event: &ClientEvent) -> String {
        let value = match event {
            ClientEvent::SessionUpdate => json!({
                "type": "session.update",
                "session": self.session_object(self.transport == TransportKind::Websocket),
            }),
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
        };
        value.to_string()
    }

    fn decode<'a>(&self, text: &'a str) -> Decoded<'a> {
        let envelope: Envelope<'a> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => return Decoded::Malformed(format!("not a JSON event: {e}")),
        };
        let kind = envelope.kind;
        match self.decode_typed(&kind, text) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => {
                debug!(event = %kind, "ignoring server event");
                Decoded::Ignored(kind)
            }
            Err(e) => Decoded::Malformed(format!("bad `{kind}` event: {e}")),
        }
    }

    fn encode_audio_append(&self, pcm: &[i16], scratch: &mut Vec<u8>, out: &mut String) {
        scratch.clear();
        for s in pcm {
            scratch.extend_from_slice(&s.to_le_bytes());
        }
        out.clear();
        out.push_str(r#"{"type":"input_audio_buffer.append","audio":""#);
        base64::engine::general_purpose::STANDARD.encode_string(scratch.as_slice(), out);
        out.push_str(r#""}"#);
    }

    fn token_session(&self) -> Value {
        self.session_object(false)
    }
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
            "output_audio_buffer.stopped" | "output_audio_buffer.cleared" => {
                ServerEvent::AudioStopped
            }
            "response.output_audio.done" | "response.audio.done" if !webrtc => {
                ServerEvent::AudioStopped
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
            "response.function_call_arguments.done" => {
                let e: FunctionCall = serde_json::from_str(text)?;
                ServerEvent::FunctionCall {
                    call_id: e.call_id,
                    name: e.name,
                    arguments: e.arguments,
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
                }
            }
            "error" => {
                let e: ErrorEvent = serde_json::from_str(text)?;
                ServerEvent::Error {
                    code: e.error.code.or(e.error.kind),
                    message: e.error.message,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Decoded::Event(event)))
    }
}

/// Writes a short, single-line excerpt of a message for logs (it may hold a transcript, so only
/// the start, and never the whole of a huge payload).
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(120) {
        let _ = if c.is_control() {
            write!(out, " ")
        } else {
            write!(out, "{c}")
        };
    }
    if text.len() > out.len() {
        out.push('…');
    }
    out
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WithSession {
    session: SessionInfo,
}

#[derive(Deserialize)]
struct SessionInfo {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct WithItem {
    #[serde(default)]
    item_id: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
}

#[derive(Deserialize)]
struct WithTranscript {
    #[serde(default)]
    transcript: String,
}

#[derive(Deserialize)]
struct TranscriptOrText {
    #[serde(default)]
    transcript: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct WithResponse {
    response: ResponseInfo,
}

#[derive(Deserialize)]
struct ResponseInfo {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    usage: Option<UsageInfo>,
}

#[derive(Deserialize)]
struct UsageInfo {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

#[derive(Deserialize)]
struct AudioDelta<'a> {
    #[serde(default, borrow)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    delta: Cow<'a, str>,
}

#[derive(Deserialize)]
struct FunctionCall {
    call_id: String,
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct ErrorEvent {
    error: ErrorInfo,
}

#[derive(Deserialize)]
struct ErrorInfo {
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: String,
}

#[cfg(test)]
#[path = "dialect_tests.rs"]
mod tests;
