//! GPT-Live in front of the [`Brain`]: the simulator's second API.
//!
//! The brain speaks the Realtime API; this front translates both ways, and is as strict as
//! the published reference: `session.start` first on a WebSocket (nothing before
//! `session.started`), a session object that refuses unknown fields, no Realtime events
//! (`response.cancel`, `conversation.item.truncate`… are refused as unknown), `response.*`
//! only under Responses delegation. What Live does differently is done here: the model decides
//! turns and stops itself when talked over (the brain's server VAD with `interrupt_response`),
//! transcripts go out as pieces, there are no response lifecycle events for spoken answers
//! (only `response.event` for the Responses backend's work, tool calls included), usage is
//! seconds (`session.usage.updated`, `session.closed`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::brain::{Brain, Mode, SimOutput};
use super::conformance::Conformance;
use super::stats::SimStats;
use super::Sim;

/// The model GPT-Live serves.
pub const MODEL: &str = "gpt-live-1";

pub struct LiveFront {
    brain: Brain,
    mode: Mode,
    stats: Arc<SimStats>,
    session_id: String,
    /// The session object as started (None until `session.start` on a WebSocket).
    session: Option<Value>,
    responses_delegation: bool,
    muted: bool,
    opened: Instant,
    out: VecDeque<SimOutput>,
    /// The brain's current response is the Responses backend's (asked for by the client, or
    /// calling a tool), so its lifecycle goes out inside `response.event`.
    backend_response: bool,
    backend_asked: bool,
    ids: u64,
    closed: bool,
}

impl LiveFront {
    /// A WebSocket session: waits for `session.start`.
    pub fn websocket(sim: &Sim) -> LiveFront {
        LiveFront::new(sim, Mode::WebSocket)
    }

    /// A WebRTC session, started by its create request with this (already checked) session.
    pub fn webrtc(sim: &Sim, session: Value) -> LiveFront {
        let mut front = LiveFront::new(sim, Mode::WebRtc);
        front.start(session, None, Instant::now());
        front
    }

    fn new(sim: &Sim, mode: Mode) -> LiveFront {
        let brain = Brain::for_sim(sim, mode);
        let session_id = sim.next_id("live");
        sim.stats.live_sessions.fetch_add(1, Ordering::Relaxed);
        LiveFront {
            brain,
            mode,
            stats: Arc::clone(&sim.stats),
            session_id,
            session: None,
            responses_delegation: false,
            muted: false,
            opened: Instant::now(),
            out: VecDeque::new(),
            backend_response: false,
            backend_asked: false,
            ids: 0,
            closed: false,
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Why a session object is refused, as the service's error would say it: (code, param,
    /// message). `webrtc` sessions take no `audio.format` (the media negotiates it).
    pub fn check_session(session: &Value, webrtc: bool) -> Result<(), (String, String)> {
        let event = json!({"type": "session.start", "session": session});
        if let Some(v) = Conformance::live().and_then(|c| c.violation(&event)) {
            return Err((v.code.to_owned(), v.message));
        }
        if webrtc && session["audio"].get("format").is_some() {
            return Err((
                "unknown_parameter".into(),
                "Unknown parameter: 'session.audio.format' (WebRTC negotiates the format).".into(),
            ));
        }
        let model = session["model"].as_str().unwrap_or("");
        if model != MODEL {
            return Err((
                "invalid_model".into(),
                format!("The model '{model}' is not a GPT-Live model."),
            ));
        }
        Ok(())
    }

    fn id(&mut self, prefix: &str) -> String {
        self.ids += 1;
        format!("{prefix}_live_{}", self.ids)
    }

    fn emit(&mut self, kind: &str, mut fields: Value) {
        fields["type"] = json!(kind);
        fields["event_id"] = json!(self.id("event"));
        self.out.push_back(SimOutput::Event(fields.to_string()));
    }

    fn error(&mut self, code: &str, message: &str, param: Option<&str>, client_id: Option<&str>) {
        self.emit(
            "error",
            json!({"error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": param,
                "client_event_id": client_id,
            }}),
        );
    }

    fn elapsed_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.opened).as_millis() as u64
    }

    fn seconds(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.opened).as_secs_f64()
    }

    fn session_resource(&self) -> Value {
        let mut session = self.session.clone().unwrap_or_else(|| json!({}));
        session["id"] = json!(self.session_id);
        session["status"] = json!("active");
        session["expires_at"] = json!(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                + 3600
        );
        session
    }

    /// Starts the session: the brain is configured as the session object says.
    fn start(&mut self, session: Value, client_id: Option<&str>, now: Instant) {
        self.responses_delegation = session["delegation"]["type"] == json!("responses");
        let tools: Vec<Value> = session["delegation"]["responses"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["type"] == json!("function"))
            .map(|t| {
                json!({"type": "function", "name": t["name"], "description": t["description"],
                       "parameters": t["parameters"]})
            })
            .collect();
        let tool_names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        tracing::info!(
            voice = session["audio"]["output"]["voice"].as_str().unwrap_or("-"),
            tools = %tool_names.join(","),
            delegation = session["delegation"]["type"].as_str().unwrap_or("client"),
            "live session started"
        );
        // GPT-Live decides turns itself and stops when talked over: server VAD that answers
        // and interrupts.
        let mut update = json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"turn_detection": {
                        "type": "server_vad", "create_response": true, "interrupt_response": true,
                    }},
                    "output": {"voice": session["audio"]["output"]["voice"].as_str().unwrap_or("marin")},
                },
            },
        });
        if !tools.is_empty() {
            update["session"]["tools"] = Value::Array(tools);
        }
        self.brain.on_translated_event(&update.to_string(), now);
        self.session = Some(session);
        let resource = self.session_resource();
        let mut started = json!({"session": resource});
        if let Some(id) = client_id {
            started["client_event_id"] = json!(id);
        }
        self.emit("session.started", started);
    }

    /// One client event (JSON text), as received.
    pub fn on_client_event(&mut self, text: &str, now: Instant) {
        if self.closed {
            return;
        }
        self.stats.client_events.fetch_add(1, Ordering::Relaxed);
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.error("invalid_json", &format!("Invalid JSON: {e}"), None, None);
                return;
            }
        };
        let kind = value["type"].as_str().unwrap_or("").to_owned();
        let client_id = value["event_id"].as_str().map(str::to_owned);
        let client_id = client_id.as_deref();
        if let Some(conformance) = Conformance::live() {
            self.stats.schema_checked.fetch_add(1, Ordering::Relaxed);
            if let Some(v) = conformance.violation(&value) {
                tracing::warn!(
                    "client event outside the published GPT-Live reference: {}",
                    v.message
                );
                self.stats.violation(v.message.clone());
                self.error(v.code, &v.message, None, client_id);
                return;
            }
        }
        if kind != "session.input_audio.append" {
            tracing::info!(event = %kind, "client event");
        }
        if self.session.is_none() {
            if kind == "session.start" {
                let session = value["session"].clone();
                match LiveFront::check_session(&session, false) {
                    Ok(()) => self.start(session, client_id, now),
                    Err((code, message)) => {
                        self.stats.violation(message.clone());
                        self.error(&code, &message, Some("session"), client_id);
                    }
                }
            } else {
                let message =
                    format!("Send session.start first; got {kind} before session.started.");
                self.stats.violation(message.clone());
                self.error("session_not_started", &message, None, client_id);
            }
            return;
        }
        match kind.as_str() {
            "session.start" => self.error(
                "session_already_started",
                "The session has already started.",
                None,
                client_id,
            ),
            "session.input_audio.append" => {
                if self.mode == Mode::WebRtc {
                    self.error(
                        "invalid_request_error",
                        "session.input_audio.append is for the primary WebSocket only.",
                        None,
                        client_id,
                    );
                } else if !self.muted {
                    let append =
                        json!({"type": "input_audio_buffer.append", "audio": value["audio"]});
                    self.brain.on_translated_event(&append.to_string(), now);
                }
            }
            "session.input_audio.mute" => {
                self.muted = true;
                self.emit("session.input_audio.muted", json!({}));
            }
            "session.input_audio.unmute" => {
                self.muted = false;
                self.emit("session.input_audio.unmuted", json!({}));
            }
            "session.instructions.append"
            | "session.thinking.append"
            | "session.commentary.append" => {
                let content = value["content"].as_str().unwrap_or("").to_owned();
                let at = self.elapsed_ms(now);
                self.emit(&format!("{kind}ed"), json!({"start_ms": at, "end_ms": at}));
                if !value["delegation_id"].is_null() {
                    self.stats
                        .delegations_answered
                        .fetch_add(1, Ordering::Relaxed);
                }
                // An instruction to answer (typed text) gets an answer, as the model would.
                if kind == "session.instructions.append" && value["delegation_id"].is_null() {
                    let item = json!({"type": "conversation.item.create", "item": {
                        "type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": content}]}});
                    self.brain.on_translated_event(&item.to_string(), now);
                    self.brain
                        .on_translated_event(r#"{"type":"response.create"}"#, now);
                }
            }
            "response.item.create" | "response.create" if !self.responses_delegation => self.error(
                "delegation_required",
                &format!("{kind} requires Responses delegation."),
                None,
                client_id,
            ),
            "response.item.create" => {
                let item = json!({"type": "conversation.item.create", "item": value["item"]});
                self.brain.on_translated_event(&item.to_string(), now);
            }
            "response.create" => {
                self.backend_asked = true;
                self.brain
                    .on_translated_event(r#"{"type":"response.create"}"#, now);
            }
            "session.update" => {
                let session = self.session_resource();
                self.emit("session.updated", json!({"session": session}));
            }
            "session.close" => {
                self.close("close_requested", now);
            }
            _ => {}
        }
    }

    fn close(&mut self, reason: &str, now: Instant) {
        let session = self.session_resource();
        self.emit(
            "session.closed",
            json!({"reason": reason, "session": session, "usage": {"seconds": self.seconds(now)}}),
        );
        self.out
            .push_back(SimOutput::Close(format!("session closed: {reason}")));
        self.closed = true;
    }

    /// The caller's audio (WebRTC), 48 kHz mono.
    pub fn on_audio(&mut self, pcm: &[i16], now: Instant) {
        if self.session.is_some() && !self.muted {
            self.brain.on_audio(pcm, now);
        }
    }

    pub fn poll(&mut self, now: Instant) -> Option<SimOutput> {
        loop {
            if let Some(out) = self.out.pop_front() {
                return Some(out);
            }
            if self.closed {
                return None;
            }
            match self.brain.poll(now)? {
                SimOutput::Event(text) => self.translate(&text, now),
                SimOutput::Audio(frame) => return Some(SimOutput::Audio(frame)),
                SimOutput::Close(reason) => {
                    self.out.push_back(SimOutput::Close(reason));
                    self.closed = true;
                }
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.out.is_empty() {
            return Some(Instant::now());
        }
        self.brain.next_deadline()
    }

    /// One of the brain's Realtime events, as GPT-Live would say it (or nothing).
    fn translate(&mut self, text: &str, now: Instant) {
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let at = self.elapsed_ms(now);
        match event["type"].as_str().unwrap_or("") {
            "response.output_audio.delta" => {
                self.emit(
                    "session.output_audio.delta",
                    json!({"delta": event["delta"]}),
                );
            }
            "conversation.item.input_audio_transcription.completed" => {
                let text = event["transcript"].as_str().unwrap_or("");
                // In pieces, as GPT-Live sends them: word by word.
                for word in text.split_inclusive(' ') {
                    self.emit(
                        "session.input_transcript.delta",
                        json!({"delta": word, "start_ms": at, "end_ms": at}),
                    );
                }
            }
            "response.output_audio_transcript.done" | "response.output_text.done" => {
                let text = event["transcript"]
                    .as_str()
                    .or(event["text"].as_str())
                    .unwrap_or("")
                    .to_owned();
                // A space after the last word too: the next answer's pieces follow on.
                let text = format!("{} ", text.trim_end());
                for word in text.split_inclusive(' ') {
                    self.emit(
                        "session.output_transcript.delta",
                        json!({"delta": word, "start_ms": at, "end_ms": at}),
                    );
                }
            }
            "response.created" => {
                self.backend_response = std::mem::take(&mut self.backend_asked);
                if self.backend_response {
                    let id = event["response"]["id"].clone();
                    self.emit(
                        "response.event",
                        json!({"event": {"type": "response.created",
                               "response": {"id": id, "status": "in_progress"}},
                               "delegation_id": null}),
                    );
                }
            }
            "response.output_item.done" if event["item"]["type"] == json!("function_call") => {
                let response_id = event["response_id"].clone();
                if !self.backend_response {
                    // The voice model hands the task to the Responses backend.
                    self.backend_response = true;
                    let delegation = self.id("deleg");
                    self.emit(
                        "session.delegation.created",
                        json!({"delegation": {"id": delegation, "type": "delegation",
                               "target": "responses", "response_id": response_id},
                               "offset_ms": at}),
                    );
                    self.emit(
                        "response.event",
                        json!({"event": {"type": "response.created",
                               "response": {"id": response_id, "status": "in_progress"}},
                               "delegation_id": delegation}),
                    );
                }
                self.emit(
                    "response.event",
                    json!({"event": {"type": "response.output_item.done", "output_index": 0,
                           "item": event["item"]}, "delegation_id": null}),
                );
            }
            "response.done" => {
                if event["response"]["status_details"]["reason"] == json!("turn_detected") {
                    // Tests read this: GPT-Live stops by itself, no client event asks it to.
                    tracing::info!("the model stopped talking: the user talked over it");
                }
                if std::mem::take(&mut self.backend_response) {
                    let r = &event["response"];
                    let status = r["status"].as_str().unwrap_or("completed");
                    let kind = match status {
                        "failed" => "response.failed",
                        "incomplete" => "response.incomplete",
                        _ => "response.completed",
                    };
                    self.emit(
                        "response.event",
                        json!({"event": {"type": kind, "response": {
                            "id": r["id"], "status": status, "usage": r["usage"],
                            "error": r["status_details"]["error"]}},
                            "delegation_id": null}),
                    );
                }
                let seconds = self.seconds(now);
                self.emit(
                    "session.usage.updated",
                    json!({"usage": {"seconds": seconds}}),
                );
            }
            "error" => {
                let e = &event["error"];
                let code = e["code"].as_str().unwrap_or("server_error").to_owned();
                if code == "session_expired" {
                    self.close("expired", now);
                    return;
                }
                let message = e["message"].as_str().unwrap_or("").to_owned();
                let client = e["event_id"].as_str().map(str::to_owned);
                self.error(&code, &message, None, client.as_deref());
            }
            // Realtime's own vocabulary, with no GPT-Live counterpart.
            _ => {}
        }
    }
}

/// A session at either API.
pub enum Conversation {
    Realtime(Box<Brain>),
    Live(Box<LiveFront>),
}

impl Conversation {
    pub fn session_id(&self) -> &str {
        match self {
            Conversation::Realtime(b) => b.session_id(),
            Conversation::Live(l) => l.session_id(),
        }
    }

    pub fn on_client_event(&mut self, text: &str, now: Instant) {
        match self {
            Conversation::Realtime(b) => b.on_client_event(text, now),
            Conversation::Live(l) => l.on_client_event(text, now),
        }
    }

    pub fn on_audio(&mut self, pcm: &[i16], now: Instant) {
        match self {
            Conversation::Realtime(b) => b.on_audio(pcm, now),
            Conversation::Live(l) => l.on_audio(pcm, now),
        }
    }

    pub fn poll(&mut self, now: Instant) -> Option<SimOutput> {
        match self {
            Conversation::Realtime(b) => b.poll(now),
            Conversation::Live(l) => l.poll(now),
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self {
            Conversation::Realtime(b) => b.next_deadline(),
            Conversation::Live(l) => l.next_deadline(),
        }
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
