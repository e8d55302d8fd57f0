//! GPT-Live's ways in, through `LiveConnector` against the simulator: the API key on both
//! transports, a backend that creates the session (`api.session_url`, no key on the device),
//! and the refusals a user can meet, each one clear line with no secret in it.

use std::time::Duration;

use realtime_voiced::config::{Protocol, Secret, TransportKind};
use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::connector::LiveConnector;
use realtime_voiced::transport::{Connector, ErrorKind, Link, LinkEvent};
use testkit::link::{context, install_crypto_and_logs, loopback_config};
use testkit::sim::{self, SimOptions};
use tokio::time::timeout;

const KEY: &str = "sk-live-SECRET-device-key";

/// The first event of a link: GPT-Live reports the session as started before anything else.
async fn first_event(link: &mut Link) -> ServerEvent {
    match timeout(Duration::from_secs(5), link.events.recv()).await {
        Ok(Some(LinkEvent::Server(event))) => event,
        other => panic!("no first event: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_opens_both_transports_and_the_session_is_started_first() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions::default()).await;
    let key_file = tempfile::NamedTempFile::new().expect("key file");
    std::fs::write(key_file.path(), KEY).expect("key");
    for kind in [TransportKind::Websocket, TransportKind::Webrtc] {
        let mut config = loopback_config(&sim.base_url());
        config.api.protocol = Protocol::Live;
        config.api.api_key_file = Some(key_file.path().to_owned());
        let (ctx, _mic, _speaker) = context(config, 64);
        let connector = LiveConnector::new(ctx);
        assert_eq!(connector.ready(), Ok(()));
        let mut link = timeout(Duration::from_secs(15), connector.connect(kind))
            .await
            .expect("bounded")
            .unwrap_or_else(|e| panic!("{kind}: {}", e.message));
        assert!(
            matches!(first_event(&mut link).await, ServerEvent::SessionCreated { ref session_id } if session_id.starts_with("live_")),
            "{kind}"
        );
        // Typed text is answered: its transcript comes back in pieces.
        link.commands
            .send(ClientEvent::UserText("hello there".into()))
            .await
            .expect("send");
        let heard = timeout(Duration::from_secs(10), async {
            while let Some(event) = link.events.recv().await {
                if let LinkEvent::Server(ServerEvent::TranscriptPiece { .. }) = event {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(heard, "{kind}: no transcript piece");
    }
    let stats = sim.sim.stats.to_json();
    assert_eq!(stats["live_sessions"], 2, "{stats}");
    assert_eq!(stats["schema_violations"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_creates_the_session_and_no_key_is_needed() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions::default()).await;
    let mut config = loopback_config(&sim.base_url());
    config.api.protocol = Protocol::Live;
    // The simulator's create endpoint stands for the backend: it takes what the service takes.
    config.api.session_url = Some(format!("{}/live/sessions", sim.base_url()));
    config.api.session_url_headers = [(
        "Authorization".to_owned(),
        Secret::new("Bearer sk-held-by-the-backend"),
    )]
    .into_iter()
    .collect();
    let (ctx, _mic, _speaker) = context(config, 64);
    let connector = LiveConnector::new(ctx);
    assert_eq!(connector.ready(), Ok(()), "no key needed");
    let mut link = timeout(
        Duration::from_secs(15),
        connector.connect(TransportKind::Webrtc),
    )
    .await
    .expect("bounded")
    .unwrap_or_else(|e| panic!("{}", e.message));
    assert!(matches!(
        first_event(&mut link).await,
        ServerEvent::SessionCreated { .. }
    ));
    // A WebSocket to GPT-Live needs the key on the device: a clear, retryable refusal (the
    // machine goes back to WebRTC).
    let Err(err) = connector.connect(TransportKind::Websocket).await else {
        panic!("a WebSocket without the key was not refused");
    };
    assert!(err.message.contains("needs the API key"), "{}", err.message);
    assert_eq!(err.kind, ErrorKind::Transient);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_one_clear_line_without_the_key() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions::default()).await;
    // No key anywhere: not ready, and says where to put one.
    let mut config = loopback_config(&sim.base_url());
    config.api.protocol = Protocol::Live;
    config.api.api_key_file = Some("/nonexistent/key".into());
    let (ctx, _mic, _speaker) = context(config, 64);
    let why = LiveConnector::new(ctx).ready().expect_err("no key");
    assert!(!why.contains('\n'), "{why}");

    // A Realtime ephemeral token is no GPT-Live credential: refused, and not retried.
    let key_file = tempfile::NamedTempFile::new().expect("key file");
    std::fs::write(key_file.path(), "ek_sim_1").expect("key");
    let mut config = loopback_config(&sim.base_url());
    config.api.protocol = Protocol::Live;
    config.api.api_key_file = Some(key_file.path().to_owned());
    let (ctx, _mic, _speaker) = context(config, 64);
    for kind in [TransportKind::Webrtc, TransportKind::Websocket] {
        let Err(err) = LiveConnector::new(ctx.clone()).connect(kind).await else {
            panic!("{kind}: an ephemeral token was accepted");
        };
        assert_eq!(err.kind, ErrorKind::Fatal, "{kind}: {}", err.message);
        assert!(err.message.contains("401"), "{kind}: {}", err.message);
        assert!(
            !err.message.contains('\n') && !err.message.contains("ek_sim_1"),
            "{}",
            err.message
        );
    }
}
