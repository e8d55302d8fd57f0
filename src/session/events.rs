//! The conversation as the state machine sees it: events from the service and commands to it,
//! independent of the wire dialect (Realtime GA today, another API tomorrow) and of the transport.
//! A dialect module translates these to and from JSON.

/// Who said a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Token counts reported when a response finishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// What the service tells us, already parsed and stripped to what the daemon acts on.
/// Audio itself does not pass through here: transports hand it straight to the audio engine.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    SessionCreated {
        session_id: String,
    },
    SessionUpdated,
    /// Server VAD heard the user start speaking.
    SpeechStarted {
        item_id: Option<String>,
    },
    SpeechStopped,
    /// Final transcript of what the user said.
    InputTranscript {
        text: String,
    },
    ResponseCreated {
        response_id: String,
    },
    /// The first audio of an assistant item is on its way to the speaker.
    AudioStarted {
        item_id: Option<String>,
    },
    /// The service stopped sending (or, on WebRTC, playing) assistant audio; `interrupted`
    /// when WebRTC playout was cut short (`output_audio_buffer.cleared`).
    AudioStopped {
        interrupted: bool,
    },
    /// Final transcript of what the assistant said.
    AssistantTranscript {
        text: String,
    },
    /// A function call item the service completed (never one from a cancelled response).
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    ResponseDone {
        usage: Option<Usage>,
        outcome: ResponseOutcome,
    },
    /// What the user said could not be transcribed.
    TranscriptionFailed {
        message: String,
    },
    Error {
        code: Option<String>,
        message: String,
        /// Which of our events it answers (its type and `event_id`), when the service says.
        about: Option<String>,
    },
    /// A piece of a transcript (GPT-Live sends only pieces; the machine decides when a turn's
    /// text is complete).
    TranscriptPiece {
        role: Role,
        text: String,
    },
    /// Voice time the service has counted for this session so far (GPT-Live bills seconds).
    SecondsUsed(f64),
    /// The voice model handed a task to the device (GPT-Live client delegation). It carries no
    /// task text: only its id.
    Delegated {
        delegation_id: String,
    },
    /// The service ended the session (GPT-Live `session.closed`); `expired` when it reached
    /// its length limit, which a fresh session continues.
    SessionClosed {
        expired: bool,
        reason: String,
        /// The session's final count of voice time.
        seconds: Option<f64>,
    },
}

/// How a response ended (`response.done`'s `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    Completed,
    /// Cancelled by us or by the user talking (`turn_detected`).
    Cancelled,
    /// The service could not finish it: why, from `status_details`.
    Failed(String),
    /// Cut short (`max_output_tokens`, `content_filter`): why.
    Incomplete(String),
}

/// What the daemon asks of the service.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Configure the session from the daemon's configuration (the dialect builds the body).
    SessionUpdate,
    /// The tools changed (a program offered or withdrew one): tell the running session, where
    /// the API allows reconfiguring it.
    ToolsUpdate,
    /// A typed user message (D-Bus `SendText`).
    UserText(String),
    /// An earlier turn restored from memory.
    HistoryItem {
        role: Role,
        text: String,
    },
    ResponseCreate,
    ResponseCancel,
    /// WebRTC: drop audio the service has queued for us.
    OutputAudioClear,
    /// WebSocket: tell the service how much of an item the user actually heard.
    Truncate {
        item_id: String,
        audio_end_ms: u32,
    },
    FunctionOutput {
        call_id: String,
        output: String,
    },
    /// GPT-Live client delegation: the device has no agent to carry out a handed-off task.
    DelegationDeclined {
        delegation_id: String,
    },
}
