//! Why connecting failed, typed by what the caller can do about it, and the helpers that keep
//! every error the user sees on one line.

/// What a failed connect means for the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth another try as it is: the network, a timeout, a busy or failing service.
    Transient,
    /// The service refused the short-lived token it was shown (HTTP 401/403): a fresh token may
    /// be let in, so the connector mints one and tries once more.
    TokenRefused,
    /// Retrying cannot help until the configuration changes: the API key itself was refused,
    /// the URL answers something else.
    Fatal,
}

/// Why connecting failed, as one line for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub message: String,
    pub kind: ErrorKind,
}

impl ConnectError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }

    pub fn token_refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TokenRefused, message)
    }

    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            kind,
        }
    }

    /// Whether the session should try again (after its backoff).
    pub fn is_retryable(&self) -> bool {
        self.kind != ErrorKind::Fatal
    }
}

/// The error and its causes on one line ("error sending request: connection refused"): reqwest
/// and tungstenite keep the cause out of their own message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    one_line(&out, 300)
}

/// Collapses whitespace to single spaces and caps the length: errors quote the other side (SDP
/// parser output, response bodies), and the log and the D-Bus status want one line.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// The service's `error.message` (or a top-level `message`) from a JSON error body, or the
/// start of whatever else the body was, on one line.
pub fn service_message(body: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .and_then(|m| m.as_str())
            .or_else(|| v.get("message").and_then(|m| m.as_str()))
    });
    match message {
        Some(m) => one_line(m, 300),
        None if body.trim().is_empty() => "(no details)".into(),
        None => one_line(body, 200),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_and_caps_on_a_char_boundary() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("ééééé", 3), "ééé…");
    }

    #[test]
    fn service_message_prefers_the_services_json() {
        assert_eq!(
            service_message(r#"{"error":{"message":"Invalid key."}}"#),
            "Invalid key."
        );
        assert_eq!(service_message(r#"{"message":"busy"}"#), "busy");
        assert_eq!(service_message("  "), "(no details)");
        assert_eq!(service_message("<html>\n oops"), "<html> oops");
    }

    #[test]
    fn only_fatal_errors_stop_retrying() {
        assert!(ConnectError::retry("x").is_retryable());
        assert!(ConnectError::token_refused("x").is_retryable());
        assert!(!ConnectError::fatal("x").is_retryable());
    }
    #[test]
    fn service_message_flattens_and_caps() {
        let body = r#"{"error":{"message":"Invalid ephemeral key.\nTry again","type":"invalid_request_error"}}"#;
        assert_eq!(service_message(body), "Invalid ephemeral key. Try again");
        assert_eq!(service_message(""), "(no details)");
        assert_eq!(
            service_message("<html>\n<b>Bad gateway</b></html>"),
            "<html> <b>Bad gateway</b></html>"
        );
        let long = "x".repeat(1000);
        assert_eq!(service_message(&long).chars().count(), 201);
    }
}
