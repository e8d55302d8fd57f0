//! What goes into the machine and what comes out: its inputs, actions, states, settings and
//! counters.

use std::time::Duration;

use super::events::{ClientEvent, Role, ServerEvent};
use crate::config::{Config, Protocol, TransportKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Connecting,
    Listening,
    Speaking,
    Reconnecting,
    Error,
}

impl State {
    /// The name used on D-Bus, in `STATUS=` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Listening => "listening",
            State::Speaking => "speaking",
            State::Reconnecting => "reconnecting",
            State::Error => "error",
        }
    }

    /// A session is wanted by the user (Stop has work to do).
    pub fn is_active(self) -> bool {
        !matches!(self, State::Idle | State::Error)
    }

    /// A transport is up and audio should flow.
    pub fn is_live(self) -> bool {
        matches!(self, State::Listening | State::Speaking)
    }
}

/// Short sounds played on the device itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earcon {
    Start,
    Stop,
    Error,
}

/// What the status LED shows for each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedPattern {
    Off,
    SlowBlink,
    On,
    Breathing,
    FastBlink,
}

impl LedPattern {
    pub fn for_state(state: State) -> LedPattern {
        match state {
            State::Idle => LedPattern::Off,
            State::Connecting | State::Reconnecting => LedPattern::SlowBlink,
            State::Listening => LedPattern::On,
            State::Speaking => LedPattern::Breathing,
            State::Error => LedPattern::FastBlink,
        }
    }
}

/// Why a session ended, for logs and D-Bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    User,
    IdleTimeout,
    /// Today's conversation time (`session.daily_limit_s`) is used up.
    DailyLimit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Start,
    Stop,
    Toggle,
    SendText(String),
    /// The transport asked for by the last [`Action::Connect`] is up.
    Connected,
    /// Connecting failed; `retry = false` for errors a retry cannot fix (a rejected key).
    ConnectFailed {
        reason: String,
        retry: bool,
        /// The service asked for this long before the next try (HTTP 429 `Retry-After`, or
        /// "try again in 2s" in its message): the backoff waits at least this.
        retry_after: Option<Duration>,
    },
    /// An established transport went away.
    Closed {
        reason: String,
    },
    Server(ServerEvent),
    ToolResult {
        call_id: String,
        output: String,
    },
    /// Local playback has played out everything it was given.
    PlaybackDrained,
    /// The user was heard on the device talking over the assistant; the engine has already
    /// silenced the speaker and holds what it had until a flush.
    LocalSpeech,
    /// The assistant's audio began to play at the speaker (after the jitter buffer and into
    /// the device): where the time to first audio ends.
    SpeakerStarted,
    /// After a local barge-in: the speaker fell silent `ms` after the user's voice began.
    SpeakerSilenced {
        ms: u64,
    },
    /// Today's conversation time left, not counting a stretch in progress (`None`: no daily
    /// limit). Fed before each start and after a reload; the machine counts the time itself.
    BudgetLeft(Option<Duration>),
    /// What the engine measured of a truncated item (answers [`Action::TruncatePlayed`]).
    Heard {
        heard_ms: u32,
        delivered_ms: u32,
    },
    /// The tools programs offer changed; a running session that can be reconfigured is told.
    ToolsChanged,
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a transport of this kind (fetching a token first as needed) and report back with
    /// `Connected` or `ConnectFailed`.
    Connect {
        transport: TransportKind,
        attempt: u32,
    },
    /// Close the transport, if any.
    Disconnect,
    Send(ClientEvent),
    /// Give the service what the device remembers of earlier conversations (after the
    /// session's configuration, when there is one to send).
    RestoreMemory,
    /// Drop everything queued for the speaker now (barge-in, stop).
    FlushPlayback,
    /// WebSocket barge-in: truncate `item_id` to the audio actually played (the audio engine
    /// knows how much that was, the machine does not), and report it back with
    /// [`Input::Heard`]. Comes before the [`Action::FlushPlayback`] that resets the count.
    TruncatePlayed {
        item_id: String,
    },
    Earcon(Earcon),
    Led(LedPattern),
    StateChanged(State),
    /// A new last error (empty when cleared).
    LastError(String),
    /// What was said (published as it came).
    Transcript {
        role: Role,
        text: String,
    },
    /// What to keep in memory: what the user said, and of the assistant's words only what
    /// was played.
    Remember {
        role: Role,
        text: String,
    },
    /// Worth a line in the log, not an error on the device.
    Warn(String),
    RunTool {
        call_id: String,
        name: String,
        arguments: String,
    },
    SessionEnded(StopReason),
    StatsChanged,
    /// A live stretch (listening or speaking) ended: book this much against today's budget.
    LiveTimeSpent(Duration),
    /// Where one turn's seconds went, for a log line of its own.
    TurnTimed(TurnTimes),
}

/// What the machine must know of the protocol underneath: not its words (the dialect's
/// business) but how a conversation runs on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The session is configured as it opens (GPT-Live's start), so there is no
    /// `SessionUpdate` to send once connected.
    pub configured_on_open: bool,
    pub barge_in: BargeIn,
    /// Typed text is answered only once a response is asked for (Realtime); GPT-Live's voice
    /// model answers on its own.
    pub text_needs_response: bool,
    /// The link says when the assistant's audio ends on both transports (GPT-Live: told from
    /// the audio's level as it arrives). Otherwise WebSocket audio ends when local playback
    /// drains, and WebRTC's when the service's playout stops.
    pub audio_end_from_link: bool,
}

/// Who stops the assistant when the user talks over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BargeIn {
    /// The client: it silences the speaker, cancels the response and clears (WebRTC) or
    /// truncates (WebSocket) what was not heard (Realtime).
    Client,
    /// The model hears the user and stops talking itself; the client only drops what it has
    /// queued (GPT-Live has no cancel or truncate).
    Model,
}

impl Rules {
    pub fn of(protocol: Protocol) -> Rules {
        match protocol {
            Protocol::Realtime => Rules {
                configured_on_open: false,
                barge_in: BargeIn::Client,
                text_needs_response: true,
                audio_end_from_link: false,
            },
            Protocol::Live => Rules {
                configured_on_open: true,
                barge_in: BargeIn::Model,
                text_needs_response: false,
                audio_end_from_link: true,
            },
        }
    }
}

/// The timing and retry settings the machine needs, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub transport: TransportKind,
    pub fallback: bool,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub max_session: Duration,
    pub reconnect_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub earcons: bool,
    pub tools: bool,
    pub jitter_seed: u64,
    pub rules: Rules,
}

impl Settings {
    pub fn from_config(config: &Config, jitter_seed: u64) -> Self {
        let s = &config.session;
        let t = &config.transport;
        Settings {
            transport: t.kind,
            fallback: t.fallback,
            connect_timeout: Duration::from_millis(t.connect_timeout_ms),
            idle_timeout: (s.idle_timeout_s > 0).then(|| Duration::from_secs(s.idle_timeout_s)),
            max_session: Duration::from_secs(s.max_session_s),
            reconnect_attempts: t.reconnect_attempts,
            backoff_initial: Duration::from_millis(t.reconnect_backoff_ms),
            backoff_max: Duration::from_millis(t.reconnect_backoff_max_ms),
            earcons: config.audio.earcons,
            tools: s.has(crate::config::Capability::Tools),
            jitter_seed,
            rules: Rules::of(config.api.protocol),
        }
    }
}

/// Counters published on D-Bus as `Stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub sessions: u64,
    pub reconnects: u64,
    pub last_connect_ms: Option<u64>,
    /// The last turn's time from the end of the user's speech to the first assistant audio
    /// at the speaker, and the median of the last 20 turns.
    pub time_to_first_audio_ms: Option<u64>,
    pub median_first_audio_ms: Option<u64>,
    /// The median of the recent connects (`last_connect_ms` is the last).
    pub median_connect_ms: Option<u64>,
    /// Tool programs run for the last turn, and the median over recent turns.
    pub tools_ms: Option<u64>,
    pub median_tools_ms: Option<u64>,
    /// The last local barge-in: from the user's voice beginning (in the microphone stream) to
    /// the speaker silent; and the median over recent ones.
    pub time_to_silence_ms: Option<u64>,
    pub median_time_to_silence_ms: Option<u64>,
    pub tokens_used: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub responses: u64,
    /// Responses that ended `failed` or `incomplete`.
    pub responses_failed: u64,
    /// Turns the service could not transcribe.
    pub transcription_failures: u64,
    /// Voice time the service counted (GPT-Live bills seconds, not tokens), in milliseconds.
    pub voice_ms: u64,
}

/// One turn: the user stopped talking (or typed), the answer began to play at the speaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnTimes {
    /// End of the user's turn to the first assistant audio at the speaker.
    pub first_audio_ms: u64,
    /// Tool programs run for this turn, in total.
    pub tools_ms: u64,
    /// The connect of the session the turn is in.
    pub connect_ms: Option<u64>,
    /// The user talked over the answer: how long the speaker took to fall silent.
    pub time_to_silence_ms: Option<u64>,
}

/// How much of an interrupted answer the user heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    pub heard_ms: u32,
    /// What had arrived of it, when known (WebSocket): the heard share of the text follows.
    pub delivered_ms: Option<u32>,
}

/// Transcript pieces of the turn in progress (GPT-Live sends only pieces; `pieces.rs` decides
/// when a turn is complete).
#[derive(Debug, Default)]
pub struct Pieces {
    pub(super) user: String,
    pub(super) assistant: String,
    /// Seconds the service had counted at its last report in this session.
    pub seconds_seen: f64,
}
