//! Opening a WebSocket session: the HTTP upgrade's refusals as [`ConnectError`]s, and the
//! API's own start (GPT-Live's `session.start`, answered by `session.started`).

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

use super::dialect::{Decoded, Dialect};
use super::error::{error_chain, one_line};
use super::ConnectError;
use crate::session::ServerEvent;

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends the API's opening message, if any, and waits for the service to confirm the session
/// when it must be confirmed before anything else is sent (GPT-Live).
pub(super) async fn open_session(
    socket: &mut Socket,
    dialect: &dyn Dialect,
    deadline: tokio::time::Instant,
) -> Result<Option<ServerEvent>, ConnectError> {
    if let Some(start) = dialect.websocket_start() {
        match tokio::time::timeout_at(deadline, socket.send(Message::text(start))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ConnectError::retry(format!(
                    "WebSocket: cannot start the session: {}",
                    error_chain(&e)
                )))
            }
            Err(_) => {
                return Err(ConnectError::retry(
                    "WebSocket: starting the session timed out",
                ))
            }
        }
    }
    if !dialect.awaits_start() {
        return Ok(None);
    }
    loop {
        let message =
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => {
                    return Err(ConnectError::retry(
                        "WebSocket: the service did not confirm the session in time",
                    ))
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return Err(ConnectError::retry(
                    "WebSocket: the service closed the connection before confirming the session",
                )),
                Ok(Some(Err(e))) => {
                    return Err(ConnectError::retry(format!(
                        "WebSocket: {}",
                        error_chain(&e)
                    )))
                }
                Ok(Some(Ok(message))) => message,
            };
        let Message::Text(text) = message else {
            continue;
        };
        match dialect.decode(text.as_str()) {
            Decoded::Event(event @ ServerEvent::SessionCreated { .. }) => return Ok(Some(event)),
            // A session the service refuses to start (a bad field, say) will be refused again.
            Decoded::Event(ServerEvent::Error { code, message, .. }) => {
                let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
                return Err(ConnectError::fatal(format!(
                    "the service refused to start the session: {}{code}",
                    one_line(&message, 300)
                )));
            }
            _ => {}
        }
    }
}

pub(super) fn host(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    }
}

pub(super) fn handshake_error(url: &url::Url, e: tungstenite::Error) -> ConnectError {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let detail = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["error"]["message"].as_str().map(|m| one_line(m, 200)))
                .unwrap_or_default();
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            };
            let message = format!("WebSocket to {} refused: HTTP {status}{detail}", host(url));
            // A refused ephemeral token may just have expired; the connector renews it, so the
            // next try is worth making. Other client errors will not change on their own.
            if matches!(status.as_u16(), 401 | 403) {
                ConnectError::token_refused(message)
            } else if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
                ConnectError::fatal(message)
            } else {
                ConnectError::retry(message)
            }
        }
        other => ConnectError::retry(format!(
            "WebSocket connect to {} failed: {}",
            host(url),
            error_chain(&other)
        )),
    }
}
