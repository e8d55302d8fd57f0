//! The WebRTC transport against the simulator's answerer on loopback (events both ways, the
//! audio that went in comes back out, a dropped session reaches the state machine), and against
//! endpoints that misbehave: each failure is one clear line, the right retry decision, no secret
//! in it, no panic, and bounded in time.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use realtime_voiced::config::Secret;
use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::ErrorKind;
use realtime_voiced::transport::{webrtc, ConnectError, LinkEvent};
use testkit::link::{
    context, hang_up, install_crypto_and_logs, loopback_config, play_tone_burst, webrtc_connected,
    webrtc_dialect,
};
use testkit::signals::analyse;
use testkit::sim::{self, SimOptions};
use tokio::time::timeout;

const TOKEN: &str = "ek_secret_test_token";

/// Serves `reply` for every offer on a fresh loopback port; returns the base URL.
async fn endpoint(reply: fn() -> axum::response::Response) -> String {
    let app = Router::new().route("/v1/realtime/calls", post(move || async move { reply() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

async fn connect_error(base: &str, timeout_ms: u64) -> ConnectError {
    let mut config = loopback_config(base);
    config.transport.connect_timeout_ms = timeout_ms;
    let (ctx, _mic, _speaker) = context(config, 64);
    let result = timeout(
        Duration::from_millis(timeout_ms + 5000),
        webrtc::connect(&ctx, webrtc_dialect(&ctx), &Secret::new(TOKEN)),
    )
    .await
    .expect("connect is bounded by its timeout");
    let err = match result {
        Ok(_) => panic!("connect to {base} should fail"),
        Err(e) => e,
    };
    eprintln!("{base}: {} (retry: {})", err.message, err.is_retryable());
    assert!(!err.message.contains('\n'), "one line: {err:?}");
    assert!(!err.message.contains(TOKEN), "no token in errors: {err:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_as_such_with_the_service_message() {
    install_crypto_and_logs();
    let base = endpoint(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":{"message":"Invalid ephemeral key.","type":"invalid_request_error","code":null}}"#,
        )
            .into_response()
    })
    .await;
    let err = connect_error(&base, 5000).await;
    // The connector replaces a refused token and tries once more (tests/it/tokens.rs).
    assert_eq!(err.kind, ErrorKind::TokenRefused);
    assert!(err.message.contains("HTTP 401"), "{err:?}");
    assert!(err.message.contains("Invalid ephemeral key."), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_is_retryable_and_carries_the_service_message() {
    install_crypto_and_logs();
    let base = endpoint(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":{"message":"The server is overloaded.\nPlease retry."}}"#,
        )
            .into_response()
    })
    .await;
    let err = connect_error(&base, 5000).await;
    assert!(err.is_retryable());
    assert!(err.message.contains("HTTP 503"), "{err:?}");
    assert!(
        err.message
            .contains("The server is overloaded. Please retry."),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_sdp_is_one_clear_error() {
    install_crypto_and_logs();
    let base = endpoint(|| {
        (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp"),
                (header::LOCATION, "/v1/realtime/calls/rtc_garbage"),
            ],
            "this is not SDP\r\nat all\r\n",
        )
            .into_response()
    })
    .await;
    let err = connect_error(&base, 5000).await;
    assert!(err.message.contains("answer"), "{err:?}");
    assert!(err.message.to_lowercase().contains("sdp"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_one_clear_error() {
    install_crypto_and_logs();
    let base = endpoint(|| {
        (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<html><body>Welcome to nginx!</body></html>",
        )
            .into_response()
    })
    .await;
    let err = connect_error(&base, 5000).await;
    assert!(err.message.contains("text/html"), "{err:?}");
    assert!(err.message.contains("application/sdp"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_port_is_one_clear_error() {
    install_crypto_and_logs();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = connect_error(&format!("http://127.0.0.1:{port}/v1"), 3000).await;
    assert!(err.is_retryable());
    assert!(err.message.contains("cannot reach"), "{err:?}");
    assert!(err.message.to_lowercase().contains("refused"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoint_times_out_within_the_budget() {
    install_crypto_and_logs();
    // Accepts the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let err = connect_error(&format!("http://{addr}/v1"), 1000).await;
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.message.contains("in time"), "{err:?}");
}

/// Collects link events until `stop` matches one, or `within` passes.
async fn events_until(
    events: &mut tokio::sync::mpsc::Receiver<LinkEvent>,
    within: Duration,
    stop: impl Fn(&LinkEvent) -> bool,
) -> Vec<LinkEvent> {
    let mut seen = Vec::new();
    let _ = timeout(within, async {
        while let Some(e) = events.recv().await {
            let done = stop(&e);
            seen.push(e);
            if done {
                break;
            }
        }
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_the_simulator_echoes_the_microphone() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions::default()).await;
    let (ctx, mic, speaker) = context(loopback_config(&sim.base_url()), 64);

    let started = std::time::Instant::now();
    let mut link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(15)).await;
    eprintln!(
        "connect to the simulator on loopback: {} ms",
        started.elapsed().as_millis()
    );

    let first = events_until(&mut link.events, Duration::from_secs(5), |_| true).await;
    assert!(
        matches!(first.as_slice(), [LinkEvent::Server(ServerEvent::SessionCreated { session_id })] if !session_id.is_empty()),
        "{first:?}"
    );
    link.commands
        .send(ClientEvent::SessionUpdate)
        .await
        .expect("link takes commands");
    let updated = events_until(&mut link.events, Duration::from_secs(5), |e| {
        matches!(e, LinkEvent::Server(ServerEvent::SessionUpdated))
    })
    .await;
    assert!(
        matches!(
            updated.last(),
            Some(LinkEvent::Server(ServerEvent::SessionUpdated))
        ),
        "{updated:?}"
    );

    // Speak a 440 Hz tone for a second; the simulator hears it end and answers with it.
    let speaking = tokio::spawn(play_tone_burst(mic, 1000, 3500));
    let conversation = events_until(&mut link.events, Duration::from_secs(10), |e| {
        matches!(e, LinkEvent::Server(ServerEvent::ResponseDone { .. }))
    })
    .await;
    let _ = speaking.await;
    let kinds: Vec<String> = conversation
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '(', '{'])
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    eprintln!("events: {kinds:?}");
    for expected in [
        "SpeechStarted",
        "SpeechStopped",
        "ResponseCreated",
        "ResponseDone",
    ] {
        assert!(
            kinds.iter().any(|k| k.contains(expected)),
            "{expected} missing from {conversation:?}"
        );
    }
    let report = analyse(&speaker.take());
    eprintln!("echo from the simulator: {report:?}");
    assert!(report.peak_rms > 2000.0, "the tone came back: {report:?}");
    assert!(
        (report.zero_crossing_hz - 440.0).abs() < 20.0,
        "at 440 Hz: {report:?}"
    );
    assert!(report.goertzel_ratio > 20.0, "a clean tone: {report:?}");
    // The simulator sends audio only while it answers: the one second that was spoken.
    assert!(
        (0.9..1.6).contains(&report.seconds),
        "as long as what was said: {report:?}"
    );

    assert!(
        hang_up(link).await.is_some(),
        "the link ended with a reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_session_closes_the_link() {
    install_crypto_and_logs();
    let options = SimOptions {
        drop_after_ms: Some(1500),
        ..SimOptions::default()
    };
    let sim = sim::start(options).await;
    let (ctx, _mic, _speaker) = context(loopback_config(&sim.base_url()), 64);
    let mut link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(15)).await;
    let started = std::time::Instant::now();
    let seen = events_until(&mut link.events, Duration::from_secs(10), |e| {
        matches!(e, LinkEvent::Closed { .. })
    })
    .await;
    eprintln!(
        "closed after {} ms: {:?}",
        started.elapsed().as_millis(),
        seen.last()
    );
    match seen.last() {
        Some(LinkEvent::Closed { reason }) => assert!(!reason.contains('\n'), "{reason}"),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_instructions_fit_through_the_data_channel() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions::default()).await;
    let mut config = loopback_config(&sim.base_url());
    // A long persona: session.update grows well past one SCTP packet (and past 16 KiB).
    config.session.instructions = "Answer briefly and kindly. ".repeat(2500);
    let (ctx, _mic, _speaker) = context(config, 64);
    let mut link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(15)).await;
    link.commands
        .send(ClientEvent::SessionUpdate)
        .await
        .expect("link takes commands");
    let seen = events_until(&mut link.events, Duration::from_secs(5), |e| {
        matches!(
            e,
            LinkEvent::Server(ServerEvent::SessionUpdated) | LinkEvent::Closed { .. }
        )
    })
    .await;
    assert!(
        matches!(
            seen.last(),
            Some(LinkEvent::Server(ServerEvent::SessionUpdated))
        ),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_is_reported_and_the_link_stays() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions::default()).await;
    let mut config = loopback_config(&sim.base_url());
    // Over the 256 KiB the peer accepts.
    config.session.instructions = "Answer briefly and kindly. ".repeat(12_000);
    let (ctx, _mic, _speaker) = context(config, 64);
    let mut link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(15)).await;
    link.commands
        .send(ClientEvent::SessionUpdate)
        .await
        .expect("link takes commands");
    let seen = events_until(&mut link.events, Duration::from_secs(5), |e| {
        matches!(
            e,
            LinkEvent::Server(ServerEvent::Error { .. }) | LinkEvent::Closed { .. }
        )
    })
    .await;
    match seen.last() {
        Some(LinkEvent::Server(ServerEvent::Error { code, message, .. })) => {
            assert_eq!(code.as_deref(), Some("event_too_large"));
            assert!(message.contains("session.instructions"), "{message}");
        }
        other => panic!("expected an error event, got {other:?}"),
    }
    // Still connected: a normal command goes through.
    link.commands
        .send(ClientEvent::ResponseCreate)
        .await
        .expect("the link is still up");
    let more = events_until(&mut link.events, Duration::from_secs(3), |e| {
        matches!(
            e,
            LinkEvent::Server(ServerEvent::ResponseCreated { .. }) | LinkEvent::Closed { .. }
        )
    })
    .await;
    assert!(
        matches!(
            more.last(),
            Some(LinkEvent::Server(ServerEvent::ResponseCreated { .. }))
        ),
        "{more:?}"
    );
}

/// A body that never ends: 64 KiB chunks as fast as the client takes them.
fn endless(content_type: &'static str) -> axum::response::Response {
    let chunk = bytes::Bytes::from(vec![b'a'; 64 * 1024]);
    let stream = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_cut_off_not_read_into_memory() {
    install_crypto_and_logs();
    let base = endpoint(|| endless("application/sdp")).await;
    let err = connect_error(&base, 5000).await;
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.message.contains("larger than 64 KiB"), "{err:?}");
}
