//! The configuration's shape: one struct per TOML section, each field with a default that works,
//! so that an empty file (or none at all) is a valid configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub api: Api,
    pub session: Session,
    /// Options of GPT-Live (`api.protocol = "live"`).
    pub live: Live,
    pub transport: Transport,
    pub audio: Audio,
    pub gpio: Gpio,
    pub dbus: Dbus,
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Base of the REST endpoints; `http://` is allowed for the simulator on loopback.
    #[serde(serialize_with = "super::secret::serialize_url")]
    pub base_url: String,
    /// Which of OpenAI's voice APIs the device speaks.
    pub protocol: Protocol,
    /// Empty: the protocol's default model (see [`Api::model`]).
    pub model: String,
    /// A file holding the API key (first place looked at).
    pub api_key_file: Option<PathBuf>,
    /// A backend that mints ephemeral tokens; when set, no API key is needed on the device.
    #[serde(serialize_with = "super::secret::serialize_optional_url")]
    pub token_url: Option<String>,
    /// Extra headers sent to `token_url` (often an authorization header, hence secret values).
    pub token_url_headers: BTreeMap<String, Secret>,
    /// Lifetime asked for when minting an ephemeral token from the API key.
    pub token_lifetime_s: u64,
    /// GPT-Live: a backend that creates the session for the device (it receives the body of
    /// `POST /v1/live/sessions`, our SDP offer inside, and returns the service's answer), so
    /// that no API key is needed on the device. WebRTC only.
    #[serde(serialize_with = "super::secret::serialize_optional_url")]
    pub session_url: Option<String>,
    /// Extra headers sent to `session_url` (secret values, like `token_url_headers`).
    pub session_url_headers: BTreeMap<String, Secret>,
}

impl Api {
    /// The model asked for: the configured one, or the protocol's default.
    pub fn model(&self) -> &str {
        match (self.model.trim(), self.protocol) {
            ("", Protocol::Realtime) => "gpt-realtime-2.1",
            ("", Protocol::Live) => "gpt-live-1",
            (model, _) => model,
        }
    }
}

/// OpenAI's two voice APIs. They differ in more than vocabulary: how a session starts, who
/// decides turns and barge-in, how tools are reached and how usage is counted.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The Realtime API (`/v1/realtime`): ephemeral tokens, server VAD, responses.
    #[default]
    Realtime,
    /// GPT-Live (`/v1/live/sessions`): a full-duplex model that decides turns itself.
    Live,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Realtime => "realtime",
            Protocol::Live => "live",
        })
    }
}

/// How GPT-Live hands off work its voice model does not do itself.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Delegation {
    /// `responses` when the device has tools to offer, else `client`.
    #[default]
    Auto,
    /// The device is told of each hand-off (no task text); it has no agent of its own, so it
    /// says it cannot help with that.
    Client,
    /// A Responses model on the service's side; the device's tools are its function tools.
    Responses,
}

/// `[live]`: options of GPT-Live only.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Live {
    pub delegation: Delegation,
    /// Passed through as `delegation.responses` (model, instructions, reasoning, tools such as
    /// `{ type = "web_search" }`…); the device's own tools are added to `tools`.
    pub responses: toml::Table,
}

impl Live {
    /// The backend model when the configuration names none (OpenAI's own example's).
    pub const DEFAULT_RESPONSES_MODEL: &'static str = "gpt-5.5";
}

impl Default for Api {
    fn default() -> Self {
        Api {
            base_url: "https://api.openai.com/v1".into(),
            protocol: Protocol::Realtime,
            model: String::new(),
            api_key_file: None,
            token_url: None,
            token_url_headers: BTreeMap::new(),
            token_lifetime_s: 600,
            session_url: None,
            session_url_headers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Text,
    Audio,
    Tools,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Memory {
    On,
    #[default]
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Session {
    pub voice: String,
    /// Who the assistant is; sent before `instructions`.
    pub persona: String,
    pub instructions: String,
    pub capabilities: Vec<Capability>,
    pub memory: Memory,
    /// Model that transcribes what the user said; empty turns input transcription off.
    pub transcription_model: String,
    /// End a session after this long without speech either way; 0 never.
    pub idle_timeout_s: u64,
    /// Roll over to a fresh session after this long (the service caps a session at 60 minutes).
    pub max_session_s: u64,
    /// Seconds of conversation allowed per day; 0 is unlimited.
    pub daily_limit_s: u64,
    pub turn_detection: TurnDetection,
    pub tools: Vec<Tool>,
    /// Tool programs that may run at once; further calls wait (up to a queue) or are refused.
    pub max_tool_runs: u32,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            voice: "alloy".into(),
            persona: "You are a friendly voice assistant living in a small speaker. Keep answers short and spoken.".into(),
            instructions: String::new(),
            capabilities: vec![Capability::Text, Capability::Audio, Capability::Tools],
            memory: Memory::Off,
            transcription_model: "gpt-4o-mini-transcribe".into(),
            idle_timeout_s: 30,
            max_session_s: 55 * 60,
            max_tool_runs: 4,
            daily_limit_s: 0,
            turn_detection: TurnDetection::default(),
            tools: Vec::new(),
        }
    }
}

impl Session {
    /// What the model is told: the persona, then the instructions, either left out when empty.
    pub fn full_instructions(&self) -> String {
        [self.persona.trim(), self.instructions.trim()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TurnDetectionKind {
    #[default]
    ServerVad,
    SemanticVad,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TurnDetection {
    #[serde(rename = "type")]
    pub kind: TurnDetectionKind,
    pub threshold: f64,
    pub prefix_padding_ms: u32,
    pub silence_duration_ms: u32,
}

impl Default for TurnDetection {
    fn default() -> Self {
        TurnDetection {
            kind: TurnDetectionKind::ServerVad,
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON schema of the arguments, written as a TOML table.
    #[serde(default = "empty_object_schema")]
    pub parameters: serde_json::Value,
    /// Program and arguments run for each call (no shell); none means a built-in tool.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default = "default_tool_timeout_ms")]
    pub timeout_ms: u64,
}

impl Tool {
    /// The rule for a tool's name, configured or offered over D-Bus: what the service accepts
    /// as a function name.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

fn default_tool_timeout_ms() -> u64 {
    5000
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    #[default]
    Webrtc,
    Websocket,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Webrtc => "webrtc",
            TransportKind::Websocket => "websocket",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IcePolicy {
    #[default]
    All,
    Relay,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Transport {
    pub kind: TransportKind,
    /// Fall back to WebSocket when WebRTC cannot connect.
    pub fallback: bool,
    pub connect_timeout_ms: u64,
    pub ice_transport_policy: IcePolicy,
    /// Let a call reach a server on 127.0.0.1 (the simulator, tests).
    pub allow_loopback: bool,
    pub ice_servers: Vec<IceServer>,
    /// Tries after a lost or failed connection before giving up with an error.
    pub reconnect_attempts: u32,
    /// First reconnect delay; doubles with each try, with jitter.
    pub reconnect_backoff_ms: u64,
    pub reconnect_backoff_max_ms: u64,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            kind: TransportKind::Webrtc,
            fallback: true,
            connect_timeout_ms: 10_000,
            ice_transport_policy: IcePolicy::All,
            allow_loopback: false,
            ice_servers: vec![IceServer {
                urls: vec!["stun:stun.l.google.com:19302".into()],
                username: None,
                credential: None,
            }],
            reconnect_attempts: 5,
            reconnect_backoff_ms: 500,
            reconnect_backoff_max_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Audio {
    /// ALSA PCM names; a bare `hw:` card may refuse mono 48 kHz, `plughw:` converts.
    pub capture_device: String,
    pub playback_device: String,
    pub sample_rate: u32,
    pub period_ms: u32,
    /// The microphone's frames (ms): 20, or 10 for 10 ms less delay going out, at the cost of
    /// twice the packets (and wake-ups) going out.
    pub frame_ms: u32,
    /// How much of an answer is gathered before it plays (ms): the delay that rides out a
    /// network that delivers late. It grows by itself after an answer ran dry.
    pub jitter_buffer_ms: u32,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub volume: f64,
    pub earcons: bool,
    /// Silence the speaker as soon as the user is heard talking over it, before the service
    /// says so (needs echo cancellation).
    pub local_barge_in: bool,
    /// How loud speech must be, after echo cancellation, to count (dBFS).
    pub barge_in_threshold_dbfs: f64,
    /// How long it must last (ms): shorter sounds (a cough, a residual echo) are ignored.
    pub barge_in_min_ms: u32,
}

impl Default for Audio {
    fn default() -> Self {
        Audio {
            capture_device: "default".into(),
            playback_device: "default".into(),
            sample_rate: 48_000,
            period_ms: 10,
            frame_ms: 20,
            jitter_buffer_ms: 60,
            echo_cancellation: true,
            noise_suppression: true,
            volume: 0.8,
            earcons: true,
            local_barge_in: true,
            barge_in_threshold_dbfs: -40.0,
            barge_in_min_ms: 80,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Gpio {
    pub enabled: bool,
    /// BCM numbering.
    pub button_pin: u8,
    pub button_active_low: bool,
    pub debounce_ms: u64,
    pub long_press_ms: u64,
    pub led_pin: u8,
    pub led_active_low: bool,
}

impl Default for Gpio {
    fn default() -> Self {
        Gpio {
            enabled: false,
            button_pin: 17,
            button_active_low: true,
            debounce_ms: 30,
            long_press_ms: 1500,
            led_pin: 27,
            led_active_low: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    #[default]
    System,
    Session,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Dbus {
    pub bus: Bus,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: LogLevel,
    /// Write what was said to the journal (off by default: it is the household's speech).
    pub transcripts: bool,
}
