//! Ephemeral tokens: minted from the API key (`POST {base}/realtime/client_secrets`) or fetched
//! from a backend (`api.token_url`), cached, and renewed ahead of expiry so that pressing Start
//! does not wait on a round trip. The long-lived API key only ever goes to the token endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::error::{error_chain, one_line, retry_after};
use super::http_body::{read_limited, retry_after_header, TOKEN_REPLY_LIMIT};
use super::ConnectError;
use crate::config::{Config, Secret};

/// Renew a token this long before it expires (less for very short lifetimes).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

pub const NO_KEY: &str =
    "no API key: put it in /etc/realtime-voiced/api-key, set api.api_key_file \
                      or OPENAI_API_KEY, or set api.token_url";

/// A short-lived credential for one or more sessions. Its life is counted on the monotonic
/// clock from when it was asked for: a Raspberry Pi has no real-time clock, and until NTP has
/// synced its wall clock can be days or years off.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret,
    /// How long the service said it lives.
    pub lifetime: Duration,
    /// When to stop handing it out.
    renew_at: Instant,
}

impl Token {
    fn fresh(&self, now: Instant) -> bool {
        now < self.renew_at
    }
}

/// A token's lifetime by the server's clock: `expires_at` less the reply's `Date`. Without a
/// `Date`, the device's clock is trusted only when it gives a lifetime the service could have
/// granted; otherwise the lifetime asked for is assumed.
pub fn lifetime(
    expires_at: Option<u64>,
    server_date: Option<SystemTime>,
    device_now: SystemTime,
    requested: Duration,
) -> Duration {
    let Some(expires_at) = expires_at.map(|s| UNIX_EPOCH + Duration::from_secs(s)) else {
        return requested;
    };
    if let Some(date) = server_date {
        return expires_at.duration_since(date).unwrap_or_default();
    }
    match expires_at.duration_since(device_now) {
        Ok(left) if !left.is_zero() && left <= MAX_LIFETIME => left,
        _ => {
            warn!(
                "the token's expiry and this device's clock disagree, and the reply has no Date; \
                 assuming the lifetime asked for"
            );
            requested
        }
    }
}

/// The longest lifetime the service grants a client secret.
const MAX_LIFETIME: Duration = Duration::from_secs(7200);

/// Where tokens come from, with a one-token cache.
pub struct TokenSource {
    config: Arc<Config>,
    http: reqwest::Client,
    /// The `session` object sent when minting (the dialect's transport-neutral configuration).
    session: Value,
    /// Held across the fetch, so concurrent callers (a prefetch and a Start) share one request.
    cache: Mutex<Option<Token>>,
}

impl TokenSource {
    pub fn new(config: Arc<Config>, session: Value) -> Result<Self, ConnectError> {
        let timeout = Duration::from_millis(config.transport.connect_timeout_ms);
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("realtime-voiced/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectError::fatal(format!("cannot set up HTTPS: {e}")))?;
        Ok(TokenSource {
            config,
            http,
            session,
            cache: Mutex::new(None),
        })
    }

    /// A token valid for at least the renewal margin: the cached one, or a fresh one.
    pub async fn token(&self) -> Result<Secret, ConnectError> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.as_ref().filter(|t| t.fresh(Instant::now())) {
            return Ok(token.value.clone());
        }
        *cache = None;
        let token = self.fetch().await?;
        let value = token.value.clone();
        *cache = Some(token);
        Ok(value)
    }

    /// Fetches a token in the background unless a fresh one is cached; failures are logged
    /// and left for the next [`TokenSource::token`] to report.
    pub fn prefetch(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.token().await {
                debug!("token prefetch failed: {e}");
            }
        });
    }

    /// Forgets the cached token (the service refused it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn fetch(&self) -> Result<Token, ConnectError> {
        let api = &self.config.api;
        if let Some(url) = &api.token_url {
            let mut request = self.http.post(url).json(&self.session);
            for (name, value) in &api.token_url_headers {
                request = request.header(name.as_str(), value.expose());
            }
            let secrets: Vec<&Secret> = api.token_url_headers.values().collect();
            return self.send(request, "token_url", &secrets).await;
        }
        let key = match self.config.api_key() {
            Ok(Some((key, _source))) => key,
            Ok(None) => return Err(ConnectError::fatal(NO_KEY)),
            Err(e) => return Err(ConnectError::fatal(e.to_string())),
        };
        let url = format!(
            "{}/realtime/client_secrets",
            api.base_url.trim_end_matches('/')
        );
        let body = json!({
            "expires_after": {"anchor": "created_at", "seconds": api.token_lifetime_s},
            "session": self.session,
        });
        let request = self.http.post(&url).bearer_auth(key.expose()).json(&body);
        self.send(request, "client_secrets", &[&key]).await
    }

    /// Sends a token request and reads either reply shape; `secrets` are scrubbed from errors.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        secrets: &[&Secret],
    ) -> Result<Token, ConnectError> {
        // The token's life starts no earlier than the request: counting from here is safe.
        let asked = Instant::now();
        let response = request.send().await.map_err(|e| {
            // Name the host only: a backend URL's query string may carry a credential.
            let host = e
                .url()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                .unwrap_or_else(|| "the server".to_owned());
            let kind = if e.is_timeout() {
                "timed out"
            } else {
                "failed"
            };
            ConnectError::retry(scrub(
                &format!(
                    "token request ({what}) to {host} {kind}: {}",
                    error_chain(&e.without_url())
                ),
                secrets,
            ))
        })?;
        let status = response.status();
        let retry_header = retry_after_header(&response);
        let server_date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let body = read_limited(response, TOKEN_REPLY_LIMIT)
            .await
            .map_err(|e| {
                ConnectError::retry(scrub(
                    &format!("token request ({what}): reading the reply failed: {e}"),
                    secrets,
                ))
            })?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<ErrorReply>(&body)
                .ok()
                .map(|r| r.error.message)
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let detail = one_line(&detail, 200);
            let message = match status.as_u16() {
                401 | 403 => format!(
                    "the service refused the {} (HTTP {status}): {detail}",
                    if what == "token_url" {
                        "token backend's credentials"
                    } else {
                        "API key"
                    }
                ),
                _ => format!("token request ({what}) failed: HTTP {status}: {detail}"),
            };
            let message = scrub(&message, secrets);
            let retry = status.as_u16() == 429 || status.is_server_error();
            return Err(if retry {
                ConnectError::retry(message).after(retry_after(retry_header.as_deref(), &detail))
            } else {
                ConnectError::fatal(message)
            });
        }
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
            ConnectError::retry(format!(
                "token request ({what}): the reply is not a token: {e}"
            ))
        })?;
        let (value, expires_at) = match reply.client_secret {
            Some(inner) => (inner.value, inner.expires_at),
            None => (reply.value, reply.expires_at),
        };
        let value = value.filter(|v| !v.is_empty()).ok_or_else(|| {
            ConnectError::retry(format!("token request ({what}): no token in the reply"))
        })?;
        let requested = Duration::from_secs(self.config.api.token_lifetime_s);
        let left = lifetime(expires_at, server_date, SystemTime::now(), requested);
        if left.is_zero() {
            warn!("the token source returned a token that has already expired (by its own clock)");
        }
        let margin = RENEW_MARGIN.min(left / 2);
        Ok(Token {
            value: Secret::new(value),
            lifetime: left,
            renew_at: asked + left - margin,
        })
    }
}

#[derive(Deserialize)]
struct ErrorReply {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    client_secret: Option<InnerSecret>,
}

#[derive(Deserialize)]
struct InnerSecret {
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
}

/// Removes secret values from a message, whole or as the masked fragments some servers echo.
pub(crate) fn scrub(message: &str, secrets: &[&Secret]) -> String {
    let mut out = message.to_owned();
    for secret in secrets {
        let value = secret.expose();
        // The whole value, and each word of it ("Bearer <token>" is echoed as just the token).
        for part in std::iter::once(value).chain(value.split_whitespace()) {
            if part.len() >= 6 {
                out = out.replace(part, "<redacted>");
            }
        }
    }
    // Key-shaped words ("sk-…", "ek_…"), even masked, say nothing the user needs.
    out.split(' ')
        .map(|w| {
            if w.starts_with("sk-") || w.starts_with("ek_") {
                "<redacted>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_servers_date_decides_the_lifetime_whatever_the_device_clock_says() {
        let server_now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let expires = 1_800_000_000 + 600;
        let asked = Duration::from_secs(600);
        // A Pi booted without network thinks it is 1970, or a year ahead.
        for device_now in [UNIX_EPOCH, server_now + 365 * 24 * HOUR, server_now] {
            assert_eq!(
                lifetime(Some(expires), Some(server_now), device_now, asked),
                Duration::from_secs(600)
            );
        }
    }

    #[test]
    fn without_a_date_a_wild_device_clock_is_not_trusted() {
        let asked = Duration::from_secs(300);
        let device_now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // A sane clock: the expiry is 200 s away.
        assert_eq!(
            lifetime(Some(1_800_000_200), None, device_now, asked),
            Duration::from_secs(200)
        );
        // A clock days behind (expiry seemingly far away) or ahead (already expired).
        assert_eq!(
            lifetime(Some(1_800_000_200 + 86_400), None, device_now, asked),
            asked
        );
        assert_eq!(
            lifetime(Some(1_700_000_000), None, device_now, asked),
            asked
        );
        assert_eq!(lifetime(None, None, device_now, asked), asked);
    }
}
