//! GPT-Live (`/v1/live/sessions`, model `gpt-live-1`), as OpenAI's API reference and the
//! "voice-websockets", "voice-webrtc" and "live-conversations" guides describe it.
//!
//! It differs from the Realtime API in more than words: the session is configured as it opens
//! (`session.start` on a WebSocket, the body of the WebRTC create request) and cannot be
//! reconfigured; the model decides turns and stops itself when talked over (no cancel, no
//! truncate); tools belong to a Responses model behind it (`delegation`); usage is seconds;
//! transcripts come only in pieces.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tracing::debug;

use super::event_ids::EventIds;
use super::live_wire::*;
use super::{
    checked_id, function_tools, websocket_base, CallReply, CallRequest, Decoded, Dialect,
    WS_PCM_RATE,
};
use crate::config::{Capability, Config, Delegation, TransportKind};
use crate::provided::ProvidedTools;
use crate::session::{ClientEvent, ResponseOutcome, Role, ServerEvent, Usage};

/// A text append is at most 500 tokens; about four characters a token, with a margin.
const APPEND_CHARS: usize = 1600;

pub struct Live {
    config: Arc<Config>,
    transport: TransportKind,
    ids: EventIds,
    provided: Arc<ProvidedTools>,
}

impl Live {
    pub fn new(config: Arc<Config>, transport: TransportKind) -> Self {
        Live {
            config,
            transport,
            ids: EventIds::default(),
            provided: Arc::default(),
        }
    }

    /// Offers the tools programs register on the bus too, as they are when the session opens.
    pub fn with_provided(mut self, provided: Arc<ProvidedTools>) -> Self {
        self.provided = provided;
        self
    }

    /// Whether this configuration hands work to a Responses model (which owns the tools).
    pub fn delegates_to_responses(config: &Config) -> bool {
        match config.live.delegation {
            Delegation::Responses => true,
            Delegation::Client => false,
            Delegation::Auto => {
                (config.session.has(Capability::Tools) && !config.session.tools.is_empty())
                    || !config.live.responses.is_empty()
            }
        }
    }

    /// The session object: strict on the service's side (an unknown field is refused), so only
    /// the documented fields, and `audio.format` only on the WebSocket (WebRTC negotiates).
    pub fn session_object(&self) -> Value {
        let s = &self.config.session;
        let mut session = Map::new();
        session.insert("model".into(), json!(self.config.api.model()));
        let instructions = s.full_instructions();
        if !instructions.is_empty() {
            session.insert("instructions".into(), json!(instructions));
        }
        let mut audio = json!({"output": {"voice": s.voice}});
        if self.transport == TransportKind::Websocket {
            audio["format"] = json!({"type": "audio/pcm", "rate": WS_PCM_RATE});
        }
        session.insert("audio".into(), audio);
        session.insert("delegation".into(), self.delegation());
        Value::Object(session)
    }

    fn delegation(&self) -> Value {
        let tools = function_tools(&self.config, &self.provided);
        // `auto` hands off to a Responses model when the device has tools, offered ones too.
        let auto_with_offered =
            self.config.live.delegation == Delegation::Auto && !tools.is_empty();
        if !Live::delegates_to_responses(&self.config) && !auto_with_offered {
            return json!({"type": "client"});
        }
        // The configured pass-through first; the device's own tools join its list.
        let mut responses: Map<String, Value> = self
            .config
            .live
            .responses
            .iter()
            .filter_map(|(k, v)| serde_json::to_value(v).ok().map(|v| (k.clone(), v)))
            .collect();
        responses
            .entry("model")
            .or_insert_with(|| json!(crate::config::Live::DEFAULT_RESPONSES_MODEL));
        if !tools.is_empty() {
            let mut all = match responses.remove("tools") {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            };
            all.extend(tools);
            responses.insert("tools".into(), Value::Array(all));
        }
        json!({"type": "responses", "responses": responses})
    }

    fn with_id(&self, mut value: Value, kind: &'static str) -> String {
        value["event_id"] = Value::String(self.ids.issue(kind));
        value.to_string()
    }

    /// A text append, split so that no message is over the API's limit.
    fn appends(&self, kind: &'static str, text: &str, delegation_id: Option<&str>) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(APPEND_CHARS)
            .map(|part| {
                let content: String = part.iter().collect();
                self.with_id(
                    json!({"type": kind, "content": content, "delegation_id": delegation_id}),
                    kind,
                )
            })
            .collect()
    }
}

impl Dialect for Live {
    fn encode(&self, event: &ClientEvent) -> Vec<String> {
        match event {
            // Typed text has no user-message event of its own in GPT-Live: it goes in as an
            // instruction to answer it, which the voice model acts on at once.
            ClientEvent::UserText(text) => self.appends(
                "session.instructions.append",
                &format!("The user typed this instead of saying it; answer it aloud: {text}"),
                None,
            ),
            // Background the model keeps without speaking it.
            ClientEvent::HistoryItem { role, text } => {
                let who = match role {
                    Role::User => "the user said",
                    Role::Assistant => "you said",
                };
                self.appends(
                    "session.thinking.append",
                    &format!("Earlier, in a previous conversation, {who}: {text}"),
                    None,
                )
            }
            // Tool results go to the Responses model that asked for them, which then goes on.
            ClientEvent::FunctionOutput { call_id, output } => vec![self.with_id(
                json!({
                    "type": "response.item.create",
                    "item": {"type": "function_call_output", "call_id": call_id, "output": output},
                }),
                "response.item.create",
            )],
            ClientEvent::ResponseCreate => {
                vec![self.with_id(json!({"type": "response.create"}), "response.create")]
            }
            ClientEvent::DelegationDeclined { delegation_id } => self.appends(
                "session.thinking.append",
                "This device has no way to carry out that task (no agent or tool for it). Tell the user so briefly.",
                Some(delegation_id),
            ),
            // Configured as it opened (tools a program offers later reach the next session);
            // GPT-Live stops itself when talked over and keeps no buffer to clear or truncate.
            ClientEvent::SessionUpdate
            | ClientEvent::ToolsUpdate
            | ClientEvent::ResponseCancel
            | ClientEvent::OutputAudioClear
            | ClientEvent::Truncate { .. } => {
                debug!(?event, "GPT-Live has no such event; nothing sent");
                Vec::new()
            }
        }
    }

    fn decode<'a>(&self, text: &'a str) -> Decoded<'a> {
        super::decode_by_type(text, |kind, text| self.decode_typed(kind, text))
    }

    fn encode_audio_append(&self, pcm: &[i16], scratch: &mut Vec<u8>, out: &mut String) {
        super::write_audio_event("session.input_audio.append", &self.ids, pcm, scratch, out);
    }

    fn websocket_url(&self, base_url: &str) -> Result<url::Url, String> {
        // No query: the model goes in `session.start`.
        websocket_base(base_url, "live/sessions")
    }

    fn websocket_start(&self) -> Option<String> {
        Some(self.with_id(
            json!({"type": "session.start", "session": self.session_object()}),
            "session.start",
        ))
    }

    fn call_request(&self, offer: &str) -> CallRequest {
        CallRequest {
            path: "live/sessions".into(),
            content_type: "application/json",
            body: json!({
                "session": self.session_object(),
                "transport": {"type": "webrtc", "sdp": offer},
            })
            .to_string(),
        }
    }

    fn call_answer(&self, reply: &CallReply) -> Result<(String, Option<String>), String> {
        if reply.content_type != "application/json" {
            return Err(format!(
                "answered with content type `{}` instead of application/json",
                crate::transport::error::one_line(&reply.content_type, 60)
            ));
        }
        let created: Created = serde_json::from_str(&reply.body)
            .map_err(|e| format!("the session it created is not in the documented shape: {e}"))?;
        if created.transport.kind != "webrtc" {
            return Err(format!(
                "it answered with transport `{}`, not webrtc",
                crate::transport::error::one_line(&created.transport.kind, 40)
            ));
        }
        let id = created.session.id.as_deref().and_then(checked_id);
        Ok((created.transport.sdp, id))
    }

    fn hangup_path(&self, _call_id: &str) -> Option<String> {
        // A WebRTC session ends with `session.close` on its data channel.
        None
    }

    fn awaits_start(&self) -> bool {
        true
    }

    fn closing(&self) -> Option<String> {
        Some(self.with_id(json!({"type": "session.close"}), "session.close"))
    }

    fn reports_playout(&self) -> bool {
        false
    }
}

impl Live {
    /// `Ok(None)`: a type the daemon does not act on.
    fn decode_typed<'a>(
        &self,
        kind: &str,
        text: &'a str,
    ) -> Result<Option<Decoded<'a>>, serde_json::Error> {
        let event = match kind {
            "session.started" => {
                let e: Started = serde_json::from_str(text)?;
                ServerEvent::SessionCreated {
                    session_id: e.session.id.unwrap_or_default(),
                }
            }
            "session.updated" => ServerEvent::SessionUpdated,
            "session.output_audio.delta" => {
                let e: AudioDelta<'a> = serde_json::from_str(text)?;
                return Ok(Some(Decoded::AudioDelta {
                    item_id: None,
                    base64: e.delta,
                }));
            }
            "session.input_transcript.delta" => {
                let e: TranscriptDelta = serde_json::from_str(text)?;
                ServerEvent::TranscriptPiece {
                    role: Role::User,
                    text: e.delta,
                }
            }
            "session.output_transcript.delta" => {
                let e: TranscriptDelta = serde_json::from_str(text)?;
                ServerEvent::TranscriptPiece {
                    role: Role::Assistant,
                    text: e.delta,
                }
            }
            "session.usage.updated" => {
                let e: UsageUpdated = serde_json::from_str(text)?;
                ServerEvent::SecondsUsed(e.usage.seconds)
            }
            "session.closed" => {
                let e: Closed = serde_json::from_str(text)?;
                let reason = e.reason.unwrap_or_else(|| "no reason given".into());
                ServerEvent::SessionClosed {
                    expired: reason == "expired",
                    seconds: e.usage.map(|u| u.seconds),
                    reason,
                }
            }
            "session.delegation.created" => {
                let e: DelegationCreated = serde_json::from_str(text)?;
                // A Responses hand-off tells its progress through `response.event`; only a
                // client hand-off is ours to answer.
                if e.delegation.target.as_deref() != Some("client") {
                    return Ok(None);
                }
                ServerEvent::Delegated {
                    delegation_id: e.delegation.id,
                }
            }
            "response.event" => {
                let e: Wrapped = serde_json::from_str(text)?;
                match backend_event(&e.event)? {
                    Some(event) => event,
                    None => return Ok(None),
                }
            }
            "error" => {
                let e: ErrorEvent = serde_json::from_str(text)?;
                let about = e
                    .error
                    .client_event_id
                    .or(e.client_event_id)
                    .map(|id| self.ids.describe(&id, "session.input_audio.append"));
                let mut message = e.error.message;
                if let Some(param) = e.error.param.filter(|p| !p.is_empty()) {
                    message = format!("{message} (parameter {param})");
                }
                ServerEvent::Error {
                    code: e.error.code.or(e.error.kind),
                    message,
                    about,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Decoded::Event(event)))
    }
}

/// One event of the Responses backend (inside `response.event`): its lifecycle, and function
/// calls for the device to run.
fn backend_event(event: &Value) -> Result<Option<ServerEvent>, serde_json::Error> {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    let event = match kind {
        "response.created" => {
            let e: WithResponse = serde_json::from_value(event.clone())?;
            ServerEvent::ResponseCreated {
                response_id: e.response.id.unwrap_or_default(),
            }
        }
        // As with the Realtime API: a call runs only once its item is complete.
        "response.output_item.done" => {
            let e: super::realtime_wire::WithOutputItem = serde_json::from_value(event.clone())?;
            match e.item {
                super::realtime_wire::OutputItem::FunctionCall {
                    call_id,
                    name,
                    arguments,
                    status,
                } if status.as_deref() == Some("completed") => ServerEvent::FunctionCall {
                    call_id,
                    name,
                    arguments,
                },
                _ => return Ok(None),
            }
        }
        "response.completed" | "response.failed" | "response.incomplete" => {
            let e: WithResponse = serde_json::from_value(event.clone())?;
            let r = e.response;
            let status = r.status.as_deref().unwrap_or(match kind {
                "response.failed" => "failed",
                "response.incomplete" => "incomplete",
                _ => "completed",
            });
            let why = r
                .error
                .and_then(|p| p.message.or(p.code))
                .or(r.incomplete_details.and_then(|d| d.reason))
                .unwrap_or_else(|| "no reason given".into());
            ServerEvent::ResponseDone {
                usage: r.usage.map(|u| Usage {
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                    total_tokens: u.total_tokens,
                }),
                outcome: match status {
                    "failed" => ResponseOutcome::Failed(why),
                    "incomplete" => ResponseOutcome::Incomplete(why),
                    "cancelled" => ResponseOutcome::Cancelled,
                    _ => ResponseOutcome::Completed,
                },
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
