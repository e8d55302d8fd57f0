//! The daemon's configuration: the TOML schema with its defaults, loading with errors that point at
//! file, line, column and key, validation of ranges, and where the API key comes from.
//!
//! Every field has a default that works, so an empty file (or none at all) is a valid configuration.
//! Secrets are held in [`Secret`], which never prints its contents.

mod locate;
mod secret;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use secret::Secret;

/// Where the packaged daemon looks for its configuration.
pub const DEFAULT_PATH: &str = "/etc/realtime-voiced/config.toml";

/// The name of the API key file systemd hands over with `LoadCredential=`.
pub const CREDENTIAL_NAME: &str = "openai-api-key";

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub api: Api,
    pub session: Session,
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
    pub base_url: String,
    pub model: String,
    /// A file holding the API key (first place looked at).
    pub api_key_file: Option<PathBuf>,
    /// A backend that mints ephemeral tokens; when set, no API key is needed on the device.
    pub token_url: Option<String>,
    /// Extra headers sent to `token_url` (often an authorization header, hence secret values).
    pub token_url_headers: BTreeMap<String, Secret>,
    /// Lifetime asked for when minting an ephemeral token from the API key.
    pub token_lifetime_s: u64,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-realtime".into(),
            api_key_file: None,
            token_url: None,
            token_url_headers: BTreeMap::new(),
            token_lifetime_s: 600,
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
            daily_limit_s: 0,
            turn_detection: TurnDetection::default(),
            tools: Vec::new(),
        }
    }
}

impl Session {
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
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub volume: f64,
    pub earcons: bool,
}

impl Default for Audio {
    fn default() -> Self {
        Audio {
            capture_device: "default".into(),
            playback_device: "default".into(),
            sample_rate: 48_000,
            period_ms: 10,
            echo_cancellation: true,
            noise_suppression: true,
            volume: 0.8,
            earcons: true,
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

/// One thing wrong with a configuration file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `audio.volume`; empty when the problem is not about one key.
    pub key: String,
    /// 1-based line and column, when the key is in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", format_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("{0}")]
    Credentials(String),
}

impl ConfigError {
    /// Each problem on a line of its own, for `check-config`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => {
                problems.iter().map(|p| format_problem(path, p)).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

fn format_problem(path: &Path, p: &Problem) -> String {
    let mut out = path.display().to_string();
    if let Some((line, col)) = p.position {
        out.push_str(&format!(":{line}:{col}"));
    }
    out.push_str(": ");
    if !p.key.is_empty() {
        out.push_str(&format!("`{}`: ", p.key));
    }
    out.push_str(&p.message);
    out
}

fn format_problems(path: &Path, problems: &[Problem]) -> String {
    let mut lines = problems.iter().map(|p| format_problem(path, p));
    let first = lines.next().unwrap_or_else(|| path.display().to_string());
    match problems.len() {
        0 | 1 => first,
        n => format!(
            "{first} (and {} more problem{})",
            n - 1,
            if n > 2 { "s" } else { "" }
        ),
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Like [`Config::load`], but a missing file at the default path means "all defaults".
    pub fn load_or_default(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::metadata(path) {
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            _ => Config::load(path),
        }
    }

    /// Parses and validates TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => return Err(invalid(vec![locate::problem_from_toml_error(text, &e)])),
        };
        let problems: Vec<Problem> = config
            .validate()
            .into_iter()
            .map(|(key, message)| Problem {
                position: locate::position_of_key(text, &key),
                key,
                message,
            })
            .collect();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }

    /// Range and consistency checks serde cannot express; each entry is (key path, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut v = Validator::default();
        let api = &self.api;
        v.url("api.base_url", &api.base_url, &["https", "http"]);
        v.non_empty("api.model", &api.model);
        if let Some(url) = &api.token_url {
            v.url("api.token_url", url, &["https", "http"]);
        }
        v.range("api.token_lifetime_s", api.token_lifetime_s, 10, 7200);

        let s = &self.session;
        v.non_empty("session.voice", &s.voice);
        if s.capabilities.is_empty() {
            v.fail(
                "session.capabilities",
                "needs at least one of \"text\", \"audio\", \"tools\"",
            );
        }
        v.range("session.idle_timeout_s", s.idle_timeout_s, 0, 86_400);
        v.range("session.max_session_s", s.max_session_s, 60, 3600);
        v.range("session.daily_limit_s", s.daily_limit_s, 0, 86_400);
        let td = &s.turn_detection;
        v.range_f("session.turn_detection.threshold", td.threshold, 0.0, 1.0);
        v.range(
            "session.turn_detection.prefix_padding_ms",
            td.prefix_padding_ms.into(),
            0,
            5000,
        );
        v.range(
            "session.turn_detection.silence_duration_ms",
            td.silence_duration_ms.into(),
            50,
            10_000,
        );
        let mut names = std::collections::HashSet::new();
        for (i, tool) in s.tools.iter().enumerate() {
            let key = format!("session.tools[{i}]");
            let valid_name = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                v.fail(
                    &format!("{key}.name"),
                    "must be 1 to 64 letters, digits, '_' or '-'",
                );
            } else if !names.insert(tool.name.as_str()) {
                v.fail(
                    &format!("{key}.name"),
                    &format!("tool `{}` is defined twice", tool.name),
                );
            }
            if !tool.parameters.is_object() {
                v.fail(
                    &format!("{key}.parameters"),
                    "must be a table (a JSON schema)",
                );
            }
            match &tool.command {
                Some(cmd) if cmd.first().is_none_or(|p| p.is_empty()) => v.fail(
                    &format!("{key}.command"),
                    "must name a program: [\"/path/to/program\", \"arg\", …]",
                ),
                None if tool.name != "echo" && valid_name => v.fail(
                    &format!("{key}.command"),
                    &format!(
                        "tool `{}` has no command and is not a built-in (built-ins: echo)",
                        tool.name
                    ),
                ),
                _ => {}
            }
            v.range(&format!("{key}.timeout_ms"), tool.timeout_ms, 1, 600_000);
        }

        let t = &self.transport;
        v.range(
            "transport.connect_timeout_ms",
            t.connect_timeout_ms,
            500,
            120_000,
        );
        v.range(
            "transport.reconnect_attempts",
            t.reconnect_attempts.into(),
            0,
            1000,
        );
        v.range(
            "transport.reconnect_backoff_ms",
            t.reconnect_backoff_ms,
            10,
            600_000,
        );
        v.range(
            "transport.reconnect_backoff_max_ms",
            t.reconnect_backoff_max_ms,
            t.reconnect_backoff_ms,
            3_600_000,
        );
        for (i, server) in t.ice_servers.iter().enumerate() {
            let key = format!("transport.ice_servers[{i}]");
            if server.urls.is_empty() {
                v.fail(
                    &format!("{key}.urls"),
                    "needs at least one stun:/turn:/turns: URL",
                );
            }
            let mut turn = false;
            for url in &server.urls {
                let scheme = url.split(':').next().unwrap_or_default();
                match scheme {
                    "stun" | "stuns" => {}
                    "turn" | "turns" => turn = true,
                    _ => v.fail(
                        &format!("{key}.urls"),
                        &format!("`{url}` is not a stun:, turn: or turns: URL"),
                    ),
                }
            }
            if turn && (server.username.is_none() || server.credential.is_none()) {
                v.fail(&key, "a TURN server needs `username` and `credential`");
            }
        }
        if t.ice_transport_policy == IcePolicy::Relay
            && !t
                .ice_servers
                .iter()
                .any(|s| s.urls.iter().any(|u| u.starts_with("turn")))
        {
            v.fail(
                "transport.ice_transport_policy",
                "\"relay\" needs a TURN server in [[transport.ice_servers]]",
            );
        }

        let a = &self.audio;
        v.non_empty("audio.capture_device", &a.capture_device);
        v.non_empty("audio.playback_device", &a.playback_device);
        if ![16_000, 24_000, 48_000].contains(&a.sample_rate) {
            v.fail(
                "audio.sample_rate",
                &format!("must be 16000, 24000 or 48000, got {}", a.sample_rate),
            );
        }
        if ![5, 10, 20].contains(&a.period_ms) {
            v.fail(
                "audio.period_ms",
                &format!("must be 5, 10 or 20, got {}", a.period_ms),
            );
        }
        v.range_f("audio.volume", a.volume, 0.0, 1.0);

        let g = &self.gpio;
        v.range("gpio.button_pin", g.button_pin.into(), 0, 27);
        v.range("gpio.led_pin", g.led_pin.into(), 0, 27);
        if g.button_pin == g.led_pin {
            v.fail("gpio.led_pin", "must differ from gpio.button_pin");
        }
        v.range("gpio.debounce_ms", g.debounce_ms, 1, 1000);
        v.range(
            "gpio.long_press_ms",
            g.long_press_ms,
            g.debounce_ms.saturating_add(1),
            60_000,
        );
        v.problems
    }

    /// Finds the API key: `api.api_key_file`, then `$CREDENTIALS_DIRECTORY/openai-api-key`
    /// (systemd `LoadCredential=`), then `$OPENAI_API_KEY`. `Ok(None)` when none is set anywhere.
    pub fn api_key(&self) -> Result<Option<(Secret, KeySource)>, ConfigError> {
        self.api_key_from(|name| std::env::var_os(name))
    }

    pub fn api_key_from(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<(Secret, KeySource)>, ConfigError> {
        if let Some(path) = &self.api.api_key_file {
            return read_key_file(path).map(|k| Some((k, KeySource::File(path.clone()))));
        }
        if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
            let path = PathBuf::from(dir).join(CREDENTIAL_NAME);
            if path.exists() {
                return read_key_file(&path).map(|k| Some((k, KeySource::Credential(path))));
            }
        }
        if let Some(key) = env("OPENAI_API_KEY") {
            let key = key.to_string_lossy().trim().to_owned();
            if !key.is_empty() {
                return Ok(Some((Secret::new(key), KeySource::Environment)));
            }
        }
        Ok(None)
    }

    /// The effective configuration as TOML, with every secret replaced by a placeholder.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// Where the API key was found (for messages; never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    File(PathBuf),
    Credential(PathBuf),
    Environment,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "api.api_key_file ({})", p.display()),
            KeySource::Credential(p) => write!(f, "systemd credential ({})", p.display()),
            KeySource::Environment => f.write_str("$OPENAI_API_KEY"),
        }
    }
}

fn read_key_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Credentials(format!("cannot read API key file {}: {e}", path.display()))
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(ConfigError::Credentials(format!(
            "API key file {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(key.to_owned()))
}

#[derive(Default)]
struct Validator {
    problems: Vec<(String, String)>,
}

impl Validator {
    fn fail(&mut self, key: &str, message: &str) {
        self.problems.push((key.to_owned(), message.to_owned()));
    }

    fn range(&mut self, key: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.fail(
                key,
                &format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn range_f(&mut self, key: &str, value: f64, min: f64, max: f64) {
        // NaN fails the comparison on both sides, so it is caught by the negation.
        if !(value >= min && value <= max) {
            self.fail(
                key,
                &format!("must be between {min:.1} and {max:.1}, got {value}"),
            );
        }
    }

    fn non_empty(&mut self, key: &str, value: &str) {
        if value.trim().is_empty() {
            self.fail(key, "must not be empty");
        }
    }

    fn url(&mut self, key: &str, value: &str, schemes: &[&str]) {
        match url::Url::parse(value) {
            Ok(u) if schemes.contains(&u.scheme()) && u.host().is_some() => {}
            Ok(u) => self.fail(
                key,
                &format!(
                    "scheme must be one of {}, got `{}`",
                    schemes.join(", "),
                    u.scheme()
                ),
            ),
            Err(e) => self.fail(key, &format!("not a URL ({e})")),
        }
    }
}

#[cfg(test)]
mod tests;
