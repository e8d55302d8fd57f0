//! The simulated service's conversation logic, without I/O, shared by the WebSocket and the
//! WebRTC fronts.
//!
//! Feed it client events and microphone audio with the time they arrived; [`Brain::poll`] hands
//! back what to send, audio paced in real time, and [`Brain::next_deadline`] says when to poll
//! again. Speech is found by energy: RMS over 20 ms windows, with a hangover of the session's
//! `silence_duration_ms`. A finished utterance is transcribed as "heard N ms of speech" and
//! answered with the utterance itself (or a tone).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::conformance::Conformance;
use super::stats::SimStats;
use super::{Reply, Sim, SimOptions};
use realtime_voiced::audio::resample::{Downsampler, Upsampler};
use realtime_voiced::audio::{Frame, FRAME_SAMPLES};

/// The rate of PCM inside WebSocket events, and of everything the brain keeps.
const RATE: usize = 24_000;
/// VAD window: 20 ms at 24 kHz.
const WINDOW: usize = RATE / 50;
/// RMS above which a window counts as speech (about -35 dBFS).
const SPEECH_RMS: f64 = 600.0;
/// Longest utterance kept for the echo.
const MAX_HEARD: usize = RATE * 60;

/// Which front the brain serves: it decides how assistant audio leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Audio goes out as `response.output_audio.delta` events (PCM16 24 kHz base64).
    WebSocket,
    /// Audio goes out as 48 kHz [`Frame`]s for the track, bracketed by `output_audio_buffer.*`.
    WebRtc,
}

/// One thing for the front to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SimOutput {
    /// A server event, JSON text.
    Event(String),
    /// 20 ms of assistant audio at 48 kHz (WebRTC mode only).
    Audio(Box<Frame>),
    /// Hang up, for this reason.
    Close(String),
}

struct Response {
    id: String,
    item_id: String,
    /// PCM at 24 kHz still to play (empty for a tool call or a text-only answer).
    audio: Vec<i16>,
    pos: usize,
    /// When the first chunk was due; chunk `k` is due `k` chunk periods later.
    start: Instant,
    chunks: u32,
    transcript: String,
    input_tokens: u64,
    audio_started: bool,
}

pub struct Brain {
    mode: Mode,
    reply: Reply,
    tool: Option<String>,
    fixed_transcript: Option<String>,
    /// Output of the last tool call, folded into the next answer's transcript.
    tool_output: Option<String>,
    drop_at: Option<Instant>,
    closed: bool,
    out: VecDeque<SimOutput>,
    session_id: String,
    ids: u64,

    // Session settings, from session.update.
    vad: bool,
    silence_ms: u32,
    prefix_ms: u32,
    create_response: bool,
    interrupt_response: bool,
    audio_out: bool,

    // Speech detection over 24 kHz input.
    down: Downsampler,
    down_buf: Vec<i16>,
    window: [i16; WINDOW],
    window_len: usize,
    samples_in: u64,
    speaking: bool,
    speech_start_ms: u64,
    silent_windows: u32,
    prefix: VecDeque<i16>,
    heard: Vec<i16>,
    /// The last finished utterance (echoed back).
    utterance: Vec<i16>,
    user_item: Option<String>,
    /// Text of the last user message item (for the transcript of a text-triggered reply).
    user_text: Option<String>,
    tool_called: bool,

    response: Option<Response>,
    up: Upsampler,
    b64: Vec<u8>,
    pcm_scratch: Vec<i16>,

    stats: Arc<SimStats>,
    /// Milliseconds of audio sent for each assistant item (what a truncation may cut to).
    delivered_ms: HashMap<String, u64>,
    /// Function calls of cancelled responses (their outputs should never come).
    cancelled_calls: Vec<String>,
    cancelled_call_switch: bool,
    fail_responses: u32,
    race_responses: u32,
    expire_at: Option<Instant>,
    /// The event being handled was made by a front from another API's event (GPT-Live's):
    /// that one was counted and checked already.
    translated: bool,
    /// How long the service takes to notice speech (0: at once); a detected start waits here.
    speech_start_delay: Duration,
    pending_speech: Option<(Instant, String)>,
}

impl Brain {
    /// A session of `sim`: its options, and its counters.
    pub fn for_sim(sim: &Sim, mode: Mode) -> Self {
        Brain::with_stats(&sim.options, mode, Arc::clone(&sim.stats))
    }

    pub fn new(opts: &SimOptions, mode: Mode) -> Self {
        Brain::with_stats(opts, mode, Arc::default())
    }

    fn with_stats(opts: &SimOptions, mode: Mode, stats: Arc<SimStats>) -> Self {
        let now = Instant::now();
        let mut brain = Brain {
            mode,
            reply: opts.reply,
            tool: opts.tool.clone(),
            fixed_transcript: opts.transcript.clone(),
            tool_output: None,
            drop_at: opts.drop_after_ms.map(|ms| now + Duration::from_millis(ms)),
            closed: false,
            out: VecDeque::new(),
            session_id: String::new(),
            ids: 0,
            vad: true,
            silence_ms: 500,
            prefix_ms: 300,
            create_response: true,
            interrupt_response: true,
            audio_out: true,
            down: Downsampler::default(),
            down_buf: vec![0; FRAME_SAMPLES],
            window: [0; WINDOW],
            window_len: 0,
            samples_in: 0,
            speaking: false,
            speech_start_ms: 0,
            silent_windows: 0,
            prefix: VecDeque::with_capacity(RATE),
            heard: Vec::new(),
            utterance: Vec::new(),
            user_item: None,
            user_text: None,
            tool_called: false,
            response: None,
            up: Upsampler::default(),
            b64: Vec::new(),
            pcm_scratch: Vec::new(),
            stats,
            delivered_ms: HashMap::new(),
            cancelled_calls: Vec::new(),
            cancelled_call_switch: opts.cancelled_calls,
            fail_responses: opts.fail_responses,
            race_responses: opts.race_responses,
            expire_at: opts
                .session_expired_after_ms
                .map(|ms| now + Duration::from_millis(ms)),
            translated: false,
            speech_start_delay: Duration::from_millis(opts.speech_start_delay_ms),
            pending_speech: None,
        };
        brain.session_id = brain.id("sess");
        let event = json!({
            "type": "session.created",
            "event_id": brain.id("event"),
            "session": brain.session_json(),
        });
        brain.emit(event);
        brain
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    fn id(&mut self, prefix: &str) -> String {
        self.ids += 1;
        format!("{prefix}_sim_{}", self.ids)
    }

    fn emit(&mut self, event: Value) {
        self.out.push_back(SimOutput::Event(event.to_string()));
    }

    fn event(&mut self, kind: &str, mut fields: Value) {
        fields["type"] = json!(kind);
        fields["event_id"] = json!(self.id("event"));
        self.emit(fields);
    }

    fn error(&mut self, code: &str, message: &str, client_event_id: Option<&str>) {
        let event = json!({
            "type": "error",
            "event_id": self.id("event"),
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": null,
                "event_id": client_event_id,
            },
        });
        self.emit(event);
    }

    fn session_json(&self) -> Value {
        json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": self.session_id,
            "model": "gpt-realtime",
            "output_modalities": [if self.audio_out { "audio" } else { "text" }],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "turn_detection": if self.vad {
                        json!({
                            "type": "server_vad",
                            "prefix_padding_ms": self.prefix_ms,
                            "silence_duration_ms": self.silence_ms,
                            "create_response": self.create_response,
                            "interrupt_response": self.interrupt_response,
                        })
                    } else {
                        Value::Null
                    },
                },
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"},
            },
        })
    }

    /// An event a front made from another API's (counted and checked there).
    pub fn on_translated_event(&mut self, text: &str, now: Instant) {
        self.translated = true;
        self.on_client_event(text, now);
        self.translated = false;
    }

    /// One client event (JSON text), as received.
    pub fn on_client_event(&mut self, text: &str, now: Instant) {
        if self.closed {
            return;
        }
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(default)]
            event_id: Option<String>,
        }
        let head: Head = match serde_json::from_str(text) {
            Ok(h) => h,
            Err(e) => {
                self.error(
                    "invalid_json",
                    &format!("We could not parse the JSON body of your request: {e}"),
                    None,
                );
                return;
            }
        };
        let client_id = head.event_id.as_deref();
        if !self.translated {
            self.stats.client_events.fetch_add(1, Ordering::Relaxed);
        }
        // What the service's published schema refuses is refused here too.
        if let (false, Some(conformance), Ok(value)) = (
            self.translated,
            Conformance::published(),
            serde_json::from_str::<Value>(text),
        ) {
            self.stats.schema_checked.fetch_add(1, Ordering::Relaxed);
            if let Some(v) = conformance.violation(&value) {
                tracing::warn!("client event outside the published schema: {}", v.message);
                self.stats.violation(v.message.clone());
                self.error(v.code, &v.message, client_id);
                return;
            }
        }
        if head.kind == "input_audio_buffer.append" {
            self.append(text, client_id, now);
            return;
        }
        // One line per client event (audio appends excepted): tests read what the service got.
        tracing::info!(event = %head.kind, "client event");
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return,
        };
        match head.kind.as_ref() {
            "session.update" => self.session_update(&value, client_id),
            "input_audio_buffer.commit" => {
                let item_id = self.id("item");
                self.event(
                    "input_audio_buffer.committed",
                    json!({"item_id": item_id, "previous_item_id": null}),
                );
            }
            "input_audio_buffer.clear" => {
                self.heard.clear();
                self.event("input_audio_buffer.cleared", json!({}));
            }
            "conversation.item.create" => self.item_create(&value, client_id),
            "conversation.item.truncate" => self.truncate(&value, client_id),
            "response.create" => {
                if let Some(active) = &self.response {
                    let message = format!(
                        "Conversation already has an active response in progress: {}. \
                         Wait until the response is finished before creating a new one.",
                        active.id
                    );
                    self.error(
                        "conversation_already_has_active_response",
                        &message,
                        client_id,
                    );
                } else if self.race_responses > 0 {
                    // Server VAD started a response a moment before this create arrived.
                    self.race_responses -= 1;
                    self.start_response(now);
                    let message = "Conversation already has an active response in progress. \
                                   Wait until the response is finished before creating a new one.";
                    self.error(
                        "conversation_already_has_active_response",
                        message,
                        client_id,
                    );
                } else {
                    self.start_response(now);
                }
            }
            "response.cancel" => {
                if self.response.is_some() {
                    self.cancel_response("client_cancelled");
                } else {
                    self.error(
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found",
                        client_id,
                    );
                }
            }
            "output_audio_buffer.clear" => {
                if self.mode == Mode::WebSocket {
                    self.error(
                        "invalid_value",
                        "output_audio_buffer.clear is only supported for WebRTC sessions",
                        client_id,
                    );
                } else {
                    let response_id = self.response.as_ref().map(|r| r.id.clone());
                    if let Some(r) = &mut self.response {
                        // Nothing more goes out; the buffer event below says so.
                        r.audio_started = false;
                    }
                    if self.response.is_some() {
                        self.cancel_response("client_cancelled");
                    }
                    self.event(
                        "output_audio_buffer.cleared",
                        json!({"response_id": response_id}),
                    );
                }
            }
            other => {
                let message = format!("Invalid value: '{other}'. Supported values are client events of the Realtime API.");
                self.error("invalid_value", &message, client_id);
            }
        }
    }

    fn append(&mut self, text: &str, client_id: Option<&str>, now: Instant) {
        #[derive(Deserialize)]
        struct Append<'a> {
            #[serde(borrow)]
            audio: std::borrow::Cow<'a, str>,
        }
        let audio = match serde_json::from_str::<Append>(text) {
            Ok(a) => a.audio,
            Err(e) => {
                self.error(
                    "missing_required_parameter",
                    &format!("bad input_audio_buffer.append: {e}"),
                    client_id,
                );
                return;
            }
        };
        let mut bytes = std::mem::take(&mut self.b64);
        bytes.clear();
        if base64::engine::general_purpose::STANDARD
            .decode_vec(audio.as_bytes(), &mut bytes)
            .is_err()
        {
            self.b64 = bytes;
            self.error("invalid_value", "Invalid base64 audio", client_id);
            return;
        }
        let mut pcm = std::mem::take(&mut self.pcm_scratch);
        pcm.clear();
        pcm.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        self.on_audio_24k(&pcm, now);
        self.pcm_scratch = pcm;
        self.b64 = bytes;
    }

    fn session_update(&mut self, value: &Value, client_id: Option<&str>) {
        let session = &value["session"];
        if !session.is_object() {
            self.error(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                client_id,
            );
            return;
        }
        if session["type"] != json!("realtime") {
            self.error(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                client_id,
            );
            return;
        }
        if let Some(modalities) = session["output_modalities"].as_array() {
            self.audio_out = modalities.iter().any(|m| m == "audio");
        }
        let td = &session["audio"]["input"]["turn_detection"];
        if td.is_null()
            && session["audio"]["input"]
                .as_object()
                .is_some_and(|i| i.contains_key("turn_detection"))
        {
            self.vad = false;
        } else if td.is_object() {
            self.vad = true;
            let num = |key: &str, default: u32| {
                td[key].as_u64().map_or(default, |v| v.min(10_000) as u32)
            };
            self.silence_ms = num("silence_duration_ms", self.silence_ms).max(20);
            self.prefix_ms = num("prefix_padding_ms", self.prefix_ms);
            self.create_response = td["create_response"].as_bool().unwrap_or(true);
            self.interrupt_response = td["interrupt_response"].as_bool().unwrap_or(true);
        }
        // What the client asked for, in one line: tests check that settings reach the service.
        let tools: Vec<&str> = session["tools"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        tracing::info!(
            voice = session["audio"]["output"]["voice"].as_str().unwrap_or("-"),
            tools = %tools.join(","),
            "session configured"
        );
        let mut echoed = session.clone();
        echoed["id"] = json!(self.session_id);
        echoed["object"] = json!("realtime.session");
        self.event("session.updated", json!({ "session": echoed }));
    }

    fn item_create(&mut self, value: &Value, client_id: Option<&str>) {
        let item = &value["item"];
        let item_id = item["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.id("item"));
        match item["type"].as_str() {
            Some("message") => {
                if item["role"] == json!("user") {
                    let text = item["content"][0]["text"].as_str().unwrap_or_default();
                    self.user_text = Some(text.to_owned());
                    self.tool_called = false;
                }
            }
            Some("function_call_output") => {
                if item["call_id"].as_str().is_none_or(str::is_empty) {
                    self.error(
                        "missing_required_parameter",
                        "Missing required parameter: 'item.call_id'.",
                        client_id,
                    );
                    return;
                }
                let output = item["output"].as_str().unwrap_or_default();
                tracing::info!(output, "function_call_output");
                if item["call_id"]
                    .as_str()
                    .is_some_and(|id| self.cancelled_calls.iter().any(|c| c == id))
                {
                    tracing::warn!("the client answered a function call of a cancelled response");
                    self.stats
                        .cancelled_calls_answered
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.tool_output = Some(output.to_owned());
            }
            _ => {
                self.error("invalid_value", "Invalid value for 'item.type'.", client_id);
                return;
            }
        }
        let mut item = item.clone();
        item["id"] = json!(item_id);
        item["object"] = json!("realtime.item");
        item["status"] = json!("completed");
        self.event(
            "conversation.item.added",
            json!({"previous_item_id": null, "item": item}),
        );
        self.event(
            "conversation.item.done",
            json!({"previous_item_id": null, "item": item}),
        );
    }

    /// `conversation.item.truncate`, as strict as the service: only an assistant item with
    /// audio, and never past the audio it had.
    fn truncate(&mut self, value: &Value, client_id: Option<&str>) {
        let item_id = value["item_id"].as_str().unwrap_or_default().to_owned();
        let end_ms = value["audio_end_ms"].as_u64().unwrap_or(0);
        let delivered = match &self.response {
            Some(r) if r.item_id == item_id => Some((r.pos * 1000 / RATE) as u64),
            _ => self.delivered_ms.get(&item_id).copied(),
        };
        let Some(delivered) = delivered else {
            self.error(
                "invalid_value",
                &format!("Item with item_id '{item_id}' not found or has no audio to truncate."),
                client_id,
            );
            return;
        };
        if end_ms > delivered {
            self.stats.truncates_refused.fetch_add(1, Ordering::Relaxed);
            self.error(
                "invalid_value",
                &format!("Audio content of {delivered}ms is already shorter than {end_ms}ms"),
                client_id,
            );
            return;
        }
        self.stats.truncates.fetch_add(1, Ordering::Relaxed);
        tracing::info!(item = %item_id, audio_end_ms = end_ms, delivered_ms = delivered, "truncated");
        self.event(
            "conversation.item.truncated",
            json!({
                "item_id": item_id,
                "content_index": value["content_index"].as_u64().unwrap_or(0),
                "audio_end_ms": end_ms,
            }),
        );
    }

    /// Microphone audio at 48 kHz (WebRTC: the decoded track).
    pub fn on_audio(&mut self, pcm_48k_mono: &[i16], now: Instant) {
        let mut buf = std::mem::take(&mut self.down_buf);
        for chunk in pcm_48k_mono.chunks(2 * buf.len()) {
            let n = self.down.process(chunk, &mut buf);
            self.on_audio_24k(&buf[..n], now);
        }
        self.down_buf = buf;
    }

    /// Microphone audio at 24 kHz (WebSocket: the appended buffer).
    pub fn on_audio_24k(&mut self, pcm: &[i16], now: Instant) {
        if self.closed {
            return;
        }
        for &s in pcm {
            self.window[self.window_len] = s;
            self.window_len += 1;
            if self.window_len == WINDOW {
                self.window_len = 0;
                self.samples_in += WINDOW as u64;
                self.on_window(now);
            }
        }
    }

    /// Speech detected: said, and a response in progress cut (`interrupt_response`).
    fn speech_started(&mut self, item_id: String) {
        self.event(
            "input_audio_buffer.speech_started",
            json!({"audio_start_ms": self.speech_start_ms, "item_id": item_id}),
        );
        if self.interrupt_response && self.response.is_some() {
            self.cancel_response("turn_detected");
        }
    }

    fn ms_in(&self) -> u64 {
        self.samples_in * 1000 / RATE as u64
    }

    fn on_window(&mut self, now: Instant) {
        let energy: f64 = self.window.iter().map(|&s| f64::from(s).powi(2)).sum();
        let loud = (energy / WINDOW as f64).sqrt() > SPEECH_RMS;
        if !self.vad {
            return;
        }
        if !self.speaking {
            if loud {
                self.speaking = true;
                self.silent_windows = 0;
                self.heard.clear();
                self.heard.extend(self.prefix.drain(..));
                self.heard.extend_from_slice(&self.window);
                self.speech_start_ms = self.ms_in().saturating_sub(20);
                let item_id = self.id("item");
                self.user_item = Some(item_id.clone());
                if self.speech_start_delay.is_zero() {
                    self.speech_started(item_id);
                } else {
                    self.pending_speech = Some((now + self.speech_start_delay, item_id));
                }
            } else {
                let keep = self.prefix_ms as usize * RATE / 1000;
                for &s in &self.window {
                    if self.prefix.len() >= keep {
                        self.prefix.pop_front();
                    }
                    if keep > 0 {
                        self.prefix.push_back(s);
                    }
                }
            }
            return;
        }
        if self.heard.len() + WINDOW <= MAX_HEARD {
            self.heard.extend_from_slice(&self.window);
        }
        if loud {
            self.silent_windows = 0;
            return;
        }
        self.silent_windows += 1;
        if self.silent_windows * 20 < self.silence_ms {
            return;
        }
        // The end of the turn: drop the trailing silence from what is echoed.
        self.speaking = false;
        let trailing = self.silent_windows as usize * WINDOW;
        let keep = self.heard.len().saturating_sub(trailing);
        self.heard.truncate(keep);
        self.utterance.clear();
        self.utterance.append(&mut self.heard);
        let end_ms = self.ms_in().saturating_sub(u64::from(self.silence_ms));
        let item_id = self.user_item.clone().unwrap_or_else(|| self.id("item"));
        self.event(
            "input_audio_buffer.speech_stopped",
            json!({"audio_end_ms": end_ms, "item_id": item_id}),
        );
        self.event(
            "input_audio_buffer.committed",
            json!({"item_id": item_id, "previous_item_id": null}),
        );
        self.event(
            "conversation.item.added",
            json!({"previous_item_id": null, "item": {
                "id": item_id, "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": null}],
            }}),
        );
        let heard_ms = self.utterance.len() * 1000 / RATE;
        let transcript = self
            .fixed_transcript
            .clone()
            .unwrap_or_else(|| format!("heard {heard_ms} ms of speech"));
        self.user_text = Some(transcript.clone());
        self.tool_called = false;
        self.event(
            "conversation.item.input_audio_transcription.completed",
            json!({"item_id": item_id, "content_index": 0, "transcript": transcript}),
        );
        if self.create_response && self.response.is_none() {
            self.start_response(now);
        }
    }

    fn start_response(&mut self, now: Instant) {
        self.stats.responses.fetch_add(1, Ordering::Relaxed);
        let id = self.id("resp");
        let item_id = self.id("item");
        let input_tokens = 10
            + (self.utterance.len() / (RATE / 10)) as u64
            + self.user_text.as_ref().map_or(0, |t| t.len() as u64 / 4);
        self.event(
            "response.created",
            json!({"response": {"id": id, "object": "realtime.response", "status": "in_progress", "output": []}}),
        );
        if let (Some(tool), false) = (self.tool.clone(), self.tool_called) {
            // First call the tool; the answer comes after its output and a new response.create.
            self.tool_called = true;
            let call_id = self.id("call");
            let said = self.user_text.clone().unwrap_or_default();
            let arguments = json!({ "text": said }).to_string();
            let item = json!({
                "id": item_id, "type": "function_call", "status": "completed",
                "name": tool, "call_id": call_id, "arguments": arguments,
            });
            self.event(
                "response.output_item.added",
                json!({"response_id": id, "output_index": 0, "item": item}),
            );
            self.event(
                "response.function_call_arguments.done",
                json!({
                    "response_id": id, "item_id": item_id, "output_index": 0,
                    "call_id": call_id, "name": tool, "arguments": arguments,
                }),
            );
            self.event(
                "response.output_item.done",
                json!({"response_id": id, "output_index": 0, "item": item}),
            );
            let usage = usage(input_tokens, 5);
            self.event(
                "response.done",
                json!({"response": {"id": id, "object": "realtime.response", "status": "completed",
                    "output": [item], "usage": usage}}),
            );
            return;
        }
        let mut transcript = match &self.user_text {
            Some(t) if self.utterance.is_empty() => format!("you said: {t}"),
            _ => format!(
                "echoing {} ms of what you said",
                self.utterance.len() * 1000 / RATE
            ),
        };
        // The answer carries the tool's output, as a model would.
        if let Some(output) = self.tool_output.take() {
            transcript.push_str(&format!("; the tool said: {output}"));
        }
        let audio = if !self.audio_out {
            Vec::new()
        } else {
            match self.reply {
                Reply::Echo if !self.utterance.is_empty() => self.utterance.clone(),
                _ => tone(self.utterance.len().max(RATE / 2)),
            }
        };
        self.event(
            "response.output_item.added",
            json!({"response_id": id, "output_index": 0, "item": {
                "id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": [],
            }}),
        );
        self.response = Some(Response {
            id,
            item_id,
            audio,
            pos: 0,
            start: now,
            chunks: 0,
            transcript,
            input_tokens,
            audio_started: false,
        });
        if !self.audio_out {
            self.finish_response("completed", None);
        }
    }

    fn chunk_samples(&self) -> usize {
        match self.mode {
            // 40 ms per event, as a client would batch it.
            Mode::WebSocket => 2 * WINDOW,
            Mode::WebRtc => FRAME_SAMPLES / 2,
        }
    }

    fn chunk_period(&self) -> Duration {
        Duration::from_millis((self.chunk_samples() * 1000 / RATE) as u64)
    }

    fn due(&self, r: &Response) -> Instant {
        r.start + self.chunk_period() * r.chunks
    }

    /// Ends the active response: transcript, `response.done`, and on WebRTC the end of playout.
    fn finish_response(&mut self, status: &str, reason: Option<&str>) {
        let Some(r) = self.response.take() else {
            return;
        };
        let played_ms = r.pos * 1000 / RATE;
        self.delivered_ms
            .insert(r.item_id.clone(), played_ms as u64);
        let failed = status == "completed" && self.fail_responses > 0;
        if failed {
            self.fail_responses -= 1;
        }
        let status = if failed { "failed" } else { status };
        let output_tokens = (played_ms / 50) as u64 + r.transcript.len() as u64 / 4;
        let ids = json!({"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0});
        let with = |extra: Value| {
            let mut v = ids.clone();
            if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                v.extend(extra.clone());
            }
            v
        };
        if self.audio_out {
            self.event("response.output_audio.done", with(json!({})));
            self.event(
                "response.output_audio_transcript.delta",
                with(json!({"delta": r.transcript})),
            );
            self.event(
                "response.output_audio_transcript.done",
                with(json!({"transcript": r.transcript})),
            );
        } else {
            self.event(
                "response.output_text.delta",
                with(json!({"delta": r.transcript})),
            );
            self.event(
                "response.output_text.done",
                with(json!({"text": r.transcript})),
            );
        }
        let content = if self.audio_out {
            json!([{"type": "output_audio", "transcript": r.transcript}])
        } else {
            json!([{"type": "output_text", "text": r.transcript}])
        };
        let item = json!({"id": r.item_id, "type": "message", "role": "assistant",
            "status": if status == "completed" { "completed" } else { "incomplete" }, "content": content});
        self.event(
            "response.output_item.done",
            json!({"response_id": r.id, "output_index": 0, "item": item}),
        );
        let details = if failed {
            Some(json!({"type": "failed",
                        "error": {"type": "server_error", "code": "sim_failure"}}))
        } else {
            reason.map(|reason| json!({"type": status, "reason": reason}))
        };
        self.event(
            "response.done",
            json!({"response": {
                "id": r.id, "object": "realtime.response", "status": status,
                "status_details": details, "output": [item],
                "usage": usage(r.input_tokens, output_tokens),
            }}),
        );
        if self.mode == Mode::WebRtc && r.audio_started {
            self.event("output_audio_buffer.stopped", json!({"response_id": r.id}));
        }
    }

    fn cancel_response(&mut self, reason: &str) {
        if self.cancelled_call_switch {
            // What the service sends for a call cut short: the arguments' end (which does not
            // mean the call is complete) and the item, incomplete.
            let response_id = self.response.as_ref().map(|r| r.id.clone());
            let (item_id, call_id) = (self.id("item"), self.id("call"));
            let name = self.tool.clone().unwrap_or_else(|| "echo".into());
            self.cancelled_calls.push(call_id.clone());
            let item = json!({"id": item_id, "type": "function_call", "status": "incomplete",
                              "name": name, "call_id": call_id, "arguments": "{}"});
            self.event(
                "response.function_call_arguments.done",
                json!({"response_id": response_id, "item_id": item_id, "output_index": 1,
                       "call_id": call_id, "name": name, "arguments": "{}"}),
            );
            self.event(
                "response.output_item.done",
                json!({"response_id": response_id, "output_index": 1, "item": item}),
            );
        }
        self.finish_response("cancelled", Some(reason));
    }

    /// The next thing to send, if anything is due by `now`.
    pub fn poll(&mut self, now: Instant) -> Option<SimOutput> {
        if self.closed {
            return None;
        }
        if self.expire_at.is_some_and(|at| at <= now) {
            self.expire_at = None;
            self.response = None;
            self.out.clear();
            self.error(
                "session_expired",
                "Your session hit the maximum duration of 60 minutes.",
                None,
            );
            self.out
                .push_back(SimOutput::Close("session expired".into()));
            return self.out.pop_front();
        }
        if self.drop_at.is_some_and(|at| at <= now) {
            self.closed = true;
            self.response = None;
            self.out.clear();
            return Some(SimOutput::Close("session dropped (--drop-after-ms)".into()));
        }
        if let Some((at, _)) = &self.pending_speech {
            if *at <= now {
                if let Some((_, item_id)) = self.pending_speech.take() {
                    self.speech_started(item_id);
                }
            }
        }
        if let Some(out) = self.out.pop_front() {
            return Some(out);
        }
        let due = self.response.as_ref().map(|r| self.due(r))?;
        if due > now {
            return None;
        }
        let chunk = self.chunk_samples();
        let mode = self.mode;
        let r = self.response.as_mut()?;
        if r.pos >= r.audio.len() {
            self.finish_response("completed", None);
            return self.out.pop_front();
        }
        let end = (r.pos + chunk).min(r.audio.len());
        r.chunks += 1;
        let first = !r.audio_started;
        r.audio_started = true;
        match mode {
            Mode::WebSocket => {
                self.b64.clear();
                for s in &r.audio[r.pos..end] {
                    self.b64.extend_from_slice(&s.to_le_bytes());
                }
                r.pos = end;
                let delta = base64::engine::general_purpose::STANDARD.encode(&self.b64);
                let event = json!({
                    "type": "response.output_audio.delta",
                    "event_id": format!("event_sim_audio_{}", r.chunks),
                    "response_id": r.id, "item_id": r.item_id,
                    "output_index": 0, "content_index": 0, "delta": delta,
                });
                Some(SimOutput::Event(event.to_string()))
            }
            Mode::WebRtc => {
                let mut frame = Box::new([0i16; FRAME_SAMPLES]);
                let mut half = [0i16; FRAME_SAMPLES / 2];
                half[..end - r.pos].copy_from_slice(&r.audio[r.pos..end]);
                r.pos = end;
                self.up.process(&half, &mut frame[..]);
                if first {
                    let response_id = r.id.clone();
                    self.event(
                        "output_audio_buffer.started",
                        json!({"response_id": response_id}),
                    );
                    self.out.push_back(SimOutput::Audio(frame));
                    return self.out.pop_front();
                }
                Some(SimOutput::Audio(frame))
            }
        }
    }

    /// When [`Brain::poll`] next has something; `None` while idle.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let queued = (!self.out.is_empty()).then(Instant::now);
        let audio = self.response.as_ref().map(|r| self.due(r));
        let speech = self.pending_speech.as_ref().map(|(at, _)| *at);
        [queued, audio, speech, self.drop_at, self.expire_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a response is under way (for tests and fronts).
    pub fn response_active(&self) -> bool {
        self.response.is_some()
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {"text_tokens": 0, "audio_tokens": input_tokens},
        "output_token_details": {"text_tokens": 0, "audio_tokens": output_tokens},
    })
}

/// A 660 Hz tone at 24 kHz with 10 ms fades, so it starts and ends without a click.
fn tone(samples: usize) -> Vec<i16> {
    let fade = RATE / 100;
    (0..samples)
        .map(|i| {
            let gain = (i.min(samples - 1 - i) as f64 / fade as f64).min(1.0);
            let phase = 2.0 * std::f64::consts::PI * 660.0 * i as f64 / RATE as f64;
            (8000.0 * gain * phase.sin()) as i16
        })
        .collect()
}

#[cfg(test)]
#[path = "brain_tests.rs"]
mod tests;
