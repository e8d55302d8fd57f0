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
    /// How long the service asked us to wait before trying again, if it said.
    pub retry_after: Option<std::time::Duration>,
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
            retry_after: None,
        }
    }

    /// The same error, with the wait the service asked for.
    pub fn after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
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

/// How long a refusal (HTTP 429 or 503) asks the client to wait: the `Retry-After` header in
/// seconds, or failing that the "try again in 2s" / "in 150ms" hint in the service's message.
pub fn retry_after(header: Option<&str>, message: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    if let Some(secs) = header.and_then(|h| h.trim().parse::<f64>().ok()) {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let lower = message.to_ascii_lowercase();
    let rest = &lower[lower.find("try again in ")? + "try again in ".len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = number.parse().ok()?;
    let unit = rest[number.len()..].trim_start();
    let secs = if unit.starts_with("ms") {
        value / 1000.0
    } else if unit.starts_with('s') {
        value
    } else if unit.starts_with('m') {
        value * 60.0
    } else {
        return None;
    };
    Some(Duration::from_secs_f64(secs.min(3600.0)))
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
    fn the_wait_the_service_asks_for_is_read() {
        use std::time::Duration;
        assert_eq!(retry_after(Some("3"), ""), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(
                None,
                "Rate limit reached for requests. Please try again in 2s."
            ),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(None, "Please try again in 150ms."),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            retry_after(None, "Please try again in 1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(None, "The server is overloaded."), None);
        assert_eq!(retry_after(Some("soon"), "try again in x"), None);
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
