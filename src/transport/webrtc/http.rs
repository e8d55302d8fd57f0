//! The HTTP half of a call: the offer POSTed for an answer, and the hang-up.

use std::time::Duration;

use tracing::{debug, warn};

use crate::config::Secret;
use crate::transport::error::{error_chain, one_line, retry_after, service_message};
use crate::transport::http_body::{read_limited, retry_after_header, SDP_ANSWER_LIMIT};
use crate::transport::ConnectError;

/// The hang-up is a courtesy to the service; never hold up a reconnect or shutdown for it.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn hang_up(http: &reqwest::Client, base: &str, call_id: &str, token: &Secret) {
    let url = format!("{base}/realtime/calls/{call_id}/hangup");
    let result = http
        .post(&url)
        .bearer_auth(token.expose())
        .timeout(HANGUP_TIMEOUT)
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => debug!("hung up call {call_id}"),
        Ok(r) => debug!("hang-up of call {call_id}: HTTP {}", r.status()),
        Err(e) => debug!("hang-up of call {call_id}: {}", error_chain(&e)),
    }
}

pub(super) fn http_client() -> Result<reqwest::Client, ConnectError> {
    // reqwest is built without a bundled crypto provider; make sure one is installed (a no-op
    // when the daemon already did it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("realtime-voiced/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConnectError::retry(format!("cannot create an HTTP client: {e}")))
}

/// POSTs the offer; returns the answer SDP and the call id.
pub(super) async fn post_offer(
    http: &reqwest::Client,
    base: &str,
    token: &Secret,
    offer: String,
    deadline: tokio::time::Instant,
) -> Result<(String, Option<String>), ConnectError> {
    let url = format!("{base}/realtime/calls");
    // What errors show of it: a credential in the URL is not repeated.
    let shown = crate::config::redact_url(&url);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let response = http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .bearer_auth(token.expose())
        .body(offer)
        .timeout(remaining.max(Duration::from_millis(1)))
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                ConnectError::retry(format!("WebRTC: no answer from {shown} in time"))
            } else {
                ConnectError::retry(format!(
                    "WebRTC: cannot reach {shown}: {}",
                    error_chain(&e.without_url())
                ))
            }
        })?;
    let status = response.status();
    let retry_header = retry_after_header(&response);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let call_id = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(call_id_from_location);
    let body = read_limited(response, SDP_ANSWER_LIMIT)
        .await
        .map_err(|e| {
            ConnectError::retry(format!("WebRTC: reading the answer from {shown}: {e}"))
        })?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if !(status == reqwest::StatusCode::CREATED || status == reqwest::StatusCode::OK) {
        let message = format!(
            "WebRTC: the service refused the call (HTTP {}): {}",
            status.as_u16(),
            service_message(&body)
        );
        return Err(
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                ConnectError::token_refused(message)
            } else {
                let wait = retry_after(retry_header.as_deref(), &service_message(&body));
                ConnectError::retry(message).after(wait)
            },
        );
    }
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/sdp" {
        return Err(ConnectError::retry(format!(
            "WebRTC: {shown} answered with content type `{}` instead of application/sdp (is api.base_url right?)",
            one_line(&content_type, 60)
        )));
    }
    if call_id.is_none() {
        warn!("the service's answer has no Location header; the call cannot be hung up");
    }
    Ok((body, call_id))
}

/// `Location: /v1/realtime/calls/rtc_123` → `rtc_123`.
pub(super) fn call_id_from_location(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?.trim_end_matches('/');
    let id = path.rsplit('/').next()?;
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    valid.then(|| id.to_owned())
}
