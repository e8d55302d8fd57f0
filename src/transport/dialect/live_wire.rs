//! GPT-Live's server events as serde reads them: only the fields the daemon uses, each
//! optional where the published reference does not require it.

use std::borrow::Cow;

use serde::Deserialize;

// `session.started` has the Realtime API's `{session: {id}}` shape.
pub(super) use super::realtime_wire::{SessionInfo, WithSession as Started};

/// `session.output_audio.delta`: raw audio in the session's format, base64; no item id.
#[derive(Deserialize)]
pub(super) struct AudioDelta<'a> {
    #[serde(borrow)]
    pub(super) delta: Cow<'a, str>,
}

/// `session.input_transcript.delta` and `session.output_transcript.delta`.
#[derive(Deserialize)]
pub(super) struct TranscriptDelta {
    pub(super) delta: String,
}

#[derive(Deserialize)]
pub(super) struct UsageUpdated {
    pub(super) usage: Seconds,
}

#[derive(Deserialize)]
pub(super) struct Seconds {
    #[serde(default)]
    pub(super) seconds: f64,
}

#[derive(Deserialize)]
pub(super) struct Closed {
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) usage: Option<Seconds>,
}

#[derive(Deserialize)]
pub(super) struct DelegationCreated {
    pub(super) delegation: Delegation,
}

#[derive(Deserialize)]
pub(super) struct Delegation {
    pub(super) id: String,
    #[serde(default)]
    pub(super) target: Option<String>,
}

/// `response.event`: one event of the Responses backend, wrapped.
#[derive(Deserialize)]
pub(super) struct Wrapped {
    pub(super) event: serde_json::Value,
}

/// The nested `response` of `response.created` / `response.completed` / `…failed` /
/// `…incomplete` (Responses API shapes).
#[derive(Deserialize)]
pub(super) struct WithResponse {
    pub(super) response: BackendResponse,
}

#[derive(Deserialize)]
pub(super) struct BackendResponse {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) usage: Option<super::realtime_wire::UsageInfo>,
    #[serde(default)]
    pub(super) error: Option<Problem>,
    #[serde(default)]
    pub(super) incomplete_details: Option<Incomplete>,
}

#[derive(Deserialize)]
pub(super) struct Problem {
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(default)]
    pub(super) code: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Incomplete {
    #[serde(default)]
    pub(super) reason: Option<String>,
}

/// `error`: `{type, code, message, param?, client_event_id?}`.
#[derive(Deserialize)]
pub(super) struct ErrorEvent {
    pub(super) error: ErrorInfo,
    #[serde(default)]
    pub(super) client_event_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ErrorInfo {
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) param: Option<String>,
    #[serde(default)]
    pub(super) client_event_id: Option<String>,
}

/// The body of a successful `POST /v1/live/sessions`.
#[derive(Deserialize)]
pub(super) struct Created {
    pub(super) session: SessionInfo,
    pub(super) transport: CreatedTransport,
}

#[derive(Deserialize)]
pub(super) struct CreatedTransport {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) sdp: String,
}
