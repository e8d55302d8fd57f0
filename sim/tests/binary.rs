//! The `realtime-sim` binary, as the demo and other tests run it.

use std::time::Duration;

use realtime_voiced::config::{Config, TransportKind};
use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::connector::RealtimeConnector;
use realtime_voiced::transport::{Connector, LinkEvent};
use testkit::signals::zero_crossing_hz;
use testkit::sim::SimProcess;

/// This package's binary.
const SIM: &str = env!("CARGO_BIN_EXE_realtime-sim");

/// Starts the binary on a free port; checks it listens on loopback only.
fn spawn(dir: &std::path::Path, args: &[&str]) -> SimProcess {
    let sim = SimProcess::start_binary(SIM, dir, 0, args);
    assert!(
        sim.addr.starts_with("127.0.0.1:"),
        "loopback only: {}",
        sim.addr
    );
    sim
}

/// A WebSocket link's configuration for the simulator at `addr`, with a key in `dir`.
fn config(addr: &str, dir: &tempfile::TempDir) -> Config {
    let key = dir.path().join("api-key");
    std::fs::write(&key, "sk-sim-test").expect("key");
    let mut config = Config::default();
    config.api.base_url = format!("http://{addr}/v1");
    config.api.api_key_file = Some(key);
    config.transport.connect_timeout_ms = 3000;
    config
}

#[tokio::test]
async fn the_binary_answers_a_text_turn_with_a_tone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = spawn(dir.path(), &["--reply", "tone"]);
    testkit::link::install_crypto();
    // The microphone is closed at once: the turn is typed.
    let (ctx, _, speaker) = testkit::link::context(config(&sim.addr, &dir), 4);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    let mut link = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(TransportKind::Websocket),
    )
    .await
    .expect("bounded")
    .expect("connects");
    for event in [
        ClientEvent::SessionUpdate,
        ClientEvent::UserText("hi".into()),
        ClientEvent::ResponseCreate,
    ] {
        link.commands.send(event).await.expect("send");
    }
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(LinkEvent::Server(e)) = link.events.recv().await {
            let done = matches!(e, ServerEvent::ResponseDone { .. });
            seen.push(e);
            if done {
                return;
            }
        }
    })
    .await
    .expect("a response in time");
    assert!(seen.contains(&ServerEvent::SessionUpdated), "{seen:?}");
    assert!(
        seen.iter()
            .any(|e| matches!(e, ServerEvent::AudioStarted { .. })),
        "{seen:?}"
    );
    let played = speaker.take();
    // Half a second of 660 Hz at 48 kHz.
    assert!(
        (23_000..=25_000).contains(&played.len()),
        "{}",
        played.len()
    );
    let freq = zero_crossing_hz(&played[4800..19_200]);
    assert!((650.0..670.0).contains(&freq), "{freq} Hz");
    drop(sim);
}

#[tokio::test]
async fn the_binary_refuses_tokens_and_calls_as_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = spawn(dir.path(), &["--fail-token", "401"]);
    let addr = &sim.addr;
    testkit::link::install_crypto();
    let (ctx, _, _) = testkit::link::context(config(addr, &dir), 4);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(TransportKind::Websocket),
    )
    .await
    .expect("bounded")
    .expect_err("refused");
    assert!(!e.is_retryable());
    assert!(!e.message.contains("sk-sim-test"), "{}", e.message);

    // The WebRTC endpoint wants an SDP offer, and says so in the service's error shape.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let reply = http
        .post(format!("http://{addr}/v1/realtime/calls"))
        .bearer_auth("ek_x")
        .header("content-type", "application/sdp")
        .body("hello")
        .send()
        .await
        .expect("reply");
    assert_eq!(reply.status(), 400);
    let body: serde_json::Value = reply.json().await.expect("JSON error");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("SDP")));
    let reply = http
        .post(format!("http://{addr}/v1/realtime/calls/rtc_1/hangup"))
        .bearer_auth("ek_x")
        .send()
        .await
        .expect("reply");
    assert_eq!(reply.status(), 200);
    drop(sim);
}
