//! The simulator's HTTP and WebSocket front (axum, bound to 127.0.0.1 only).
//!
//! - `POST /v1/realtime/client_secrets`: mints `ek_sim_…` tokens (API-key shape).
//! - `POST /v1/token`: the same from a "backend" (the `{client_secret: {…}}` shape);
//!   `POST /v1/token/flat` answers the flat `{value, expires_at}` shape.
//! - `POST /v1/realtime/calls` (+ `/{id}/hangup`): WebRTC, via [`super::webrtc_peer`].
//! - `GET /v1/realtime?model=…`: the WebSocket session, driven by a [`Brain`].
//! - GPT-Live: `GET /v1/live/sessions` (WebSocket, `session.start` first) and
//!   `POST /v1/live/sessions` (WebRTC: JSON `{session, transport: {type, sdp}}` in, 201 JSON
//!   `{session: {id}, transport: {type, sdp}}` out), via [`super::live::LiveFront`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tracing::{debug, info};

use super::brain::{Brain, Mode, SimOutput};
use super::live::{Conversation, LiveFront};
use super::{webrtc_peer, Sim};

/// A running simulator; dropping it stops accepting connections.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT/v1`, the value for `api.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Resolves only if the server stops on its own (an accept error).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds 127.0.0.1:`options.port` and serves in a task of its own.
pub async fn start(sim: Arc<Sim>) -> std::io::Result<RunningSim> {
    // The schemas compile before the first session, not during its first event: a test that
    // reads the counters right after a short session must find that event checked.
    let _ = (
        super::conformance::Conformance::published(),
        super::conformance::Conformance::live(),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", sim.options.port)).await?;
    let addr = listener.local_addr()?;
    let app = router(Arc::clone(&sim));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("realtime-sim: server stopped: {e}");
        }
    });
    Ok(RunningSim { addr, sim, task })
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/v1/realtime/client_secrets", post(client_secrets))
        .route("/v1/token", post(backend_token))
        .route("/v1/token/flat", post(backend_token_flat))
        .route("/v1/realtime/calls", post(calls))
        .route("/v1/realtime/calls/{id}/hangup", post(hangup))
        .route("/v1/realtime", get(websocket))
        .route("/v1/live/sessions", get(live_websocket).post(live_create))
        .route("/v1/sim/stats", get(stats))
        .with_state(sim)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "code": null, "param": null}});
    (status, Json(body)).into_response()
}

/// The bearer credential, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        "You didn't provide an API key. You need to provide your API key in an Authorization \
         header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    )
}

async fn slow(sim: &Sim) {
    if sim.options.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sim.options.slow_ms)).await;
    }
}

/// The configured token failure, if any; echoes the credential the way the service does for a
/// bad key, so that clients are tested on keeping it out of their messages.
fn token_failure(sim: &Sim, credential: &str) -> Option<Response> {
    let status = sim.options.fail_token?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(match status.as_u16() {
        401 => error(
            status,
            "invalid_request_error",
            &format!("Incorrect API key provided: {credential}. You can find your API key at https://platform.openai.com/account/api-keys."),
        ),
        429 => error(
            status,
            "rate_limit_exceeded",
            "Rate limit reached for requests. Please try again in 2s.",
        ),
        _ => error(
            status,
            "server_error",
            "The server had an error while processing your request.",
        ),
    })
}

/// A token reply: `expires_at` and the `Date` header both on the simulator's (maybe skewed)
/// clock, as a device whose own clock is off would meet them.
fn token_reply(sim: &Sim, lifetime: Duration, body: impl FnOnce(String, u64) -> Value) -> Response {
    let (value, lifetime) = sim.mint(lifetime);
    let now = sim.clock();
    let expires_at = (now + lifetime)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (
        [(header::DATE, httpdate::fmt_http_date(now))],
        Json(body(value, expires_at)),
    )
        .into_response()
}

/// 401 for a session whose token the simulator refuses (see [`Sim::refuse`]).
fn refused_session(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = bearer(headers) else {
        return Some(unauthorized());
    };
    let why = sim.refuse(token)?;
    sim.stats.tokens_refused.fetch_add(1, Ordering::Relaxed);
    Some(error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        why,
    ))
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.stats.to_json()).into_response()
}

async fn client_secrets(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: String) -> Response {
    sim.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    slow(&sim).await;
    let Some(key) = bearer(&headers) else {
        return unauthorized();
    };
    if let Some(failure) = token_failure(&sim, key) {
        return failure;
    }
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("We could not parse the JSON body of your request: {e}"),
            )
        }
    };
    let seconds = request["expires_after"]["seconds"]
        .as_u64()
        .unwrap_or(600)
        .clamp(10, 7200);
    let mut session = request["session"].clone();
    if !session.is_object() {
        session = json!({"type": "realtime"});
    }
    session["id"] = json!(sim.next_id("sess"));
    session["object"] = json!("realtime.session");
    token_reply(
        &sim,
        Duration::from_secs(seconds),
        |value, expires_at| json!({"value": value, "expires_at": expires_at, "session": session}),
    )
}

async fn backend_token(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    sim.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    slow(&sim).await;
    let Some(credential) = bearer(&headers) else {
        return unauthorized();
    };
    if let Some(failure) = token_failure(&sim, credential) {
        return failure;
    }
    let session_id = sim.next_id("sess");
    token_reply(&sim, Duration::from_secs(600), |value, expires_at| {
        json!({
            "client_secret": {"value": value, "expires_at": expires_at},
            "session_id": session_id,
            "model": "gpt-realtime-2.1",
        })
    })
}

async fn backend_token_flat(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    sim.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    slow(&sim).await;
    let Some(credential) = bearer(&headers) else {
        return unauthorized();
    };
    if let Some(failure) = token_failure(&sim, credential) {
        return failure;
    }
    token_reply(
        &sim,
        Duration::from_secs(600),
        |value, expires_at| json!({"value": value, "expires_at": expires_at}),
    )
}

async fn calls(State(sim): State<Arc<Sim>>, headers: HeaderMap, offer: String) -> Response {
    sim.stats.calls.fetch_add(1, Ordering::Relaxed);
    slow(&sim).await;
    if let Some(refused) = refused_session(&sim, &headers) {
        return refused;
    }
    if !offer.starts_with("v=0") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "The request body must be an SDP offer.",
        );
    }
    match webrtc_peer::answer(Arc::clone(&sim), offer, webrtc_peer::Api::Realtime).await {
        Ok(answer) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_owned()),
                (
                    header::LOCATION,
                    format!("/v1/realtime/calls/{}", answer.call_id),
                ),
            ],
            answer.sdp,
        )
            .into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &message),
    }
}

async fn hangup(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    slow(&sim).await;
    let live = sim.hang_up(&id);
    debug!(call = %id, live, "hangup");
    StatusCode::OK.into_response()
}

async fn websocket(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    slow(&sim).await;
    if let Some(refused) = refused_session(&sim, &headers) {
        return refused;
    }
    sim.stats.websocket_sessions.fetch_add(1, Ordering::Relaxed);
    upgrade
        .max_message_size(16 << 20)
        .max_frame_size(16 << 20)
        .on_upgrade(move |socket| websocket_session(sim, socket))
}

/// 401 for a GPT-Live session: the key is required, and GPT-Live takes no ephemeral client
/// keys (a Realtime token is refused as the service would).
fn refused_live(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    let Some(key) = bearer(headers) else {
        return Some(unauthorized());
    };
    if key.starts_with("ek_") {
        sim.stats.tokens_refused.fetch_add(1, Ordering::Relaxed);
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "GPT-Live does not accept ephemeral client keys; use an API key.",
        ));
    }
    if sim.options.refuse_first_session {
        return refused_session(sim, headers);
    }
    None
}

async fn live_websocket(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    slow(&sim).await;
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Connect to /v1/live/sessions without query parameters; the model goes in session.start.",
        );
    }
    if let Some(refused) = refused_live(&sim, &headers) {
        return refused;
    }
    sim.stats.websocket_sessions.fetch_add(1, Ordering::Relaxed);
    upgrade
        .max_message_size(16 << 20)
        .max_frame_size(16 << 20)
        .on_upgrade(move |socket| {
            let front = Conversation::Live(Box::new(LiveFront::websocket(&sim)));
            websocket_conversation(sim, socket, front)
        })
}

async fn live_create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: String) -> Response {
    sim.stats.calls.fetch_add(1, Ordering::Relaxed);
    slow(&sim).await;
    if let Some(refused) = refused_live(&sim, &headers) {
        return refused;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "The request body must be JSON: {session, transport: {type: \"webrtc\", sdp}}.",
        );
    }
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("Invalid JSON: {e}"),
            )
        }
    };
    // The create request is as strict as the session: nothing beside `session` and `transport`.
    let unknown: Vec<&String> = request
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| *k != "session" && *k != "transport")
                .collect()
        })
        .unwrap_or_default();
    if let Some(key) = unknown.first() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("Unknown parameter: '{key}'."),
        );
    }
    let transport = &request["transport"];
    let (Some("webrtc"), Some(offer)) = (transport["type"].as_str(), transport["sdp"].as_str())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Missing required parameter: 'transport' ({type: \"webrtc\", sdp}).",
        );
    };
    let session = request["session"].clone();
    if let Err((_, message)) = LiveFront::check_session(&session, true) {
        sim.stats.violation(message.clone());
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }
    if !offer.starts_with("v=0") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "transport.sdp must be an SDP offer.",
        );
    }
    match webrtc_peer::answer(
        Arc::clone(&sim),
        offer.to_owned(),
        webrtc_peer::Api::Live(session),
    )
    .await
    {
        Ok(answer) => (
            StatusCode::CREATED,
            Json(json!({
                "session": {"id": answer.call_id},
                "transport": {"type": "webrtc", "sdp": answer.sdp},
            })),
        )
            .into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &message),
    }
}

async fn websocket_session(sim: Arc<Sim>, socket: WebSocket) {
    let brain = Conversation::Realtime(Box::new(Brain::for_sim(&sim, Mode::WebSocket)));
    websocket_conversation(sim, socket, brain).await
}

async fn websocket_conversation(sim: Arc<Sim>, socket: WebSocket, mut brain: Conversation) {
    let _ = &sim;
    let session = brain.session_id().to_owned();
    info!(%session, "WebSocket session opened");
    let (mut tx, mut rx) = socket.split();
    let reason = 'session: loop {
        while let Some(output) = brain.poll(Instant::now()) {
            match output {
                SimOutput::Event(text) => {
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        break 'session "send failed".to_owned();
                    }
                }
                SimOutput::Audio(_) => {}
                SimOutput::Close(reason) => {
                    // A dropped connection, as a network failure looks: no close handshake.
                    break 'session reason;
                }
            }
        }
        let deadline = brain.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = rx.next() => match message {
                Some(Ok(Message::Text(text))) => brain.on_client_event(text.as_str(), Instant::now()),
                Some(Ok(Message::Close(_))) | None => break "client closed".to_owned(),
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("receive failed: {e}"),
            },
            () = sleep => {}
        }
    };
    info!(%session, "WebSocket session ended: {reason}");
}
