//! The HTTP half of a call: the offer POSTed for an answer, and the hang-up.

use std::time::Duration;

use tracing::{debug, warn};

use crate::config::Secret;
use crate::transport::dialect::{CallReply, Dialect};
use crate::transport::error::{error_chain, retry_after, service_message};
use crate::transport::http_body::{read_limited, retry_after_header, SDP_ANSWER_LIMIT};
use crate::transport::{ConnectError, Credentials};

/// The hang-up is a courtesy to the service; never hold up a reconnect or shutdown for it.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn hang_up(http: &reqwest::Client, url: &str, call_id: &str, token: &Secret) {
    let result = http
        .post(url)
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

/// POSTs the offer as the dialect wants it; returns the answer SDP and the call id.
pub(super) async fn post_offer(
    http: &reqwest::Client,
    base: &str,
    dialect: &dyn Dialect,
    credentials: &Credentials,
    offer: String,
    deadline: tokio::time::Instant,
) -> Result<(String, Option<String>), ConnectError> {
    let request = dialect.call_request(&offer);
    let url = match &credentials.call_url {
        Some(url) => url.clone(),
        None => format!("{base}/{}", request.path),
    };
    // What errors show of it: a credential in the URL is not repeated.
    let shown = crate::config::redact_url(&url);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let mut post = http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, request.content_type)
        .body(request.body)
        .timeout(remaining.max(Duration::from_millis(1)));
    if let Some(token) = &credentials.bearer {
        post = post.bearer_auth(token.expose());
    }
    for (name, value) in &credentials.headers {
        post = post.header(name.as_str(), value.expose());
    }
    let response = post.send().await.map_err(|e| {
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
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
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
    let reply = CallReply {
        content_type: mime,
        location,
        body,
    };
    let (answer, call_id) = dialect.call_answer(&reply).map_err(|why| {
        ConnectError::retry(format!("WebRTC: {shown} {why} (is api.base_url right?)"))
    })?;
    if call_id.is_none() {
        warn!("the service's answer names no call; it cannot be hung up");
    }
    Ok((answer, call_id))
}
