//! The server events of the Realtime API as serde reads them: only the fields the daemon uses,
//! each optional where the published schema does not require it.

use std::borrow::Cow;

use serde::Deserialize;

use crate::session::ResponseOutcome;

#[derive(Deserialize)]
pub(super) struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct WithSession {
    pub(super) session: SessionInfo,
}

#[derive(Deserialize)]
pub(super) struct SessionInfo {
    #[serde(default)]
    pub(super) id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WithItem {
    #[serde(default)]
    pub(super) item_id: Option<String>,
    #[serde(default)]
    pub(super) response_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WithTranscript {
    #[serde(default)]
    pub(super) transcript: String,
}

#[derive(Deserialize)]
pub(super) struct TranscriptOrText {
    #[serde(default)]
    pub(super) transcript: Option<String>,
    #[serde(default)]
    pub(super) text: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WithResponse {
    pub(super) response: ResponseInfo,
}

#[derive(Deserialize)]
pub(super) struct ResponseInfo {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) usage: Option<UsageInfo>,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) status_details: Option<StatusDetails>,
}

/// `response.status_details`: nothing in it is required, and it may be `null`.
#[derive(Deserialize, Default)]
pub(super) struct StatusDetails {
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) error: Option<ErrorInfo>,
}

/// `response.done`'s status as the machine needs it, with a reason worth showing the user.
pub(super) fn outcome(status: Option<&str>, details: Option<StatusDetails>) -> ResponseOutcome {
    let details = details.unwrap_or_default();
    let why = || {
        details
            .error
            .as_ref()
            .map(ErrorInfo::describe)
            .filter(|m| !m.is_empty())
            .or_else(|| details.reason.clone())
            .unwrap_or_else(|| "no reason given".into())
    };
    match status {
        Some("failed") => ResponseOutcome::Failed(why()),
        Some("incomplete") => ResponseOutcome::Incomplete(why()),
        Some("cancelled") => ResponseOutcome::Cancelled,
        _ => ResponseOutcome::Completed,
    }
}

#[derive(Deserialize)]
pub(super) struct WithOutputItem {
    pub(super) item: OutputItem,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
pub(super) enum OutputItem {
    #[serde(rename = "function_call")]
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
        #[serde(default)]
        status: Option<String>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct UsageInfo {
    #[serde(default)]
    pub(super) input_tokens: u64,
    #[serde(default)]
    pub(super) output_tokens: u64,
    #[serde(default)]
    pub(super) total_tokens: u64,
}

#[derive(Deserialize)]
pub(super) struct AudioDelta<'a> {
    #[serde(default, borrow)]
    pub(super) item_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) delta: Cow<'a, str>,
}

#[derive(Deserialize)]
pub(super) struct ErrorEvent {
    pub(super) error: ErrorInfo,
}

#[derive(Deserialize)]
pub(super) struct ErrorInfo {
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) event_id: Option<String>,
}

impl ErrorInfo {
    /// The message, or failing that the code or type: every field of an error is optional.
    pub(super) fn describe(&self) -> String {
        let name = self.code.as_deref().or(self.kind.as_deref());
        match (self.message.trim(), name) {
            ("", Some(name)) => name.to_owned(),
            ("", None) => String::new(),
            (message, Some(code)) => format!("{message} ({code})"),
            (message, None) => message.to_owned(),
        }
    }
}
