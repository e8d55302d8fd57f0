//! The daemon's event loop and state machine over a real WebRTC link to the simulator: a
//! conversation (typed text with a tool call, then speech), and the reconnect path when the
//! service drops the call.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::audio::MicFrame;
use realtime_voiced::config::{Config, Tool, TransportKind};
use realtime_voiced::control::Command;
use realtime_voiced::daemon::Daemon;
use realtime_voiced::session::{Role, State};
use realtime_voiced::transport::connector::RealtimeConnector;
use testkit::daemon::{shutdown, transcript, until, Running};
use testkit::link::{install_crypto_and_logs, loopback_config, play_tone_burst};
use testkit::sim::{self, RunningSim, SimOptions};
use tokio::sync::mpsc;

/// How long each step of a conversation may take.
const LIMIT: Duration = Duration::from_secs(15);

/// A daemon whose connector dials `sim` over WebRTC; returns it with the microphone's sender.
fn daemon_for(sim: &RunningSim, dir: &tempfile::TempDir) -> (Daemon, mpsc::Sender<MicFrame>) {
    let key = dir.path().join("api-key");
    std::fs::write(&key, "sk-daemon-test").expect("key");
    let mut config: Config = loopback_config(&sim.base_url());
    config.api.api_key_file = Some(key);
    config.transport.kind = TransportKind::Webrtc;
    config.transport.fallback = false;
    config.transport.reconnect_backoff_ms = 100;
    config.session.tools = vec![Tool {
        name: "echo".into(),
        description: "Says the text back".into(),
        parameters: serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        command: None,
        timeout_ms: 1000,
    }];
    let (ctx, mic, _speaker) = testkit::link::context(config.clone(), 500);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    let daemon = testkit::daemon::build(config, Arc::new(connector), dir.path());
    (daemon, mic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_over_webrtc_with_a_tool_call() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions {
        tool: Some("echo".into()),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, mic) = daemon_for(&sim, &dir);
    let Running {
        control,
        mut snapshot,
        mut transcripts,
        task: running,
    } = Running::listening(daemon, LIMIT).await;
    assert_eq!(snapshot.borrow().transport, TransportKind::Webrtc);

    control
        .request(|r| Command::SendText("hello over webrtc".into(), r))
        .await
        .expect("text accepted");
    assert_eq!(
        transcript(&mut transcripts, Role::Assistant, LIMIT).await,
        "you said: hello over webrtc; the tool said: hello over webrtc"
    );

    // Speech through the Opus track: 600 ms of tone, then silence to end the turn.
    tokio::spawn(play_tone_burst(mic, 600, 2000));
    let heard = transcript(&mut transcripts, Role::User, LIMIT).await;
    assert!(heard.starts_with("heard "), "{heard}");

    control.request(Command::Stop).await.expect("stop accepted");
    until(&mut snapshot, LIMIT, "idle", |s| s.state == State::Idle).await;
    assert_eq!(snapshot.borrow().last_error, "");
    shutdown(&control, running, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_is_redialled() {
    install_crypto_and_logs();
    let sim = sim::start(SimOptions {
        drop_after_ms: Some(1500),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, _mic) = daemon_for(&sim, &dir);
    let Running {
        control,
        mut snapshot,
        task: running,
        ..
    } = Running::listening(daemon, LIMIT).await;
    let first = snapshot.borrow().stats.sessions;
    // The simulator drops the call; the daemon notices and dials a new one.
    until(&mut snapshot, LIMIT, "reconnecting", |s| {
        s.state == State::Reconnecting
    })
    .await;
    // A new session, counted when the new call connects (the session id can lag: it comes with
    // session.created on the data channel).
    until(&mut snapshot, LIMIT, "listening again", |s| {
        s.state == State::Listening && s.stats.sessions > first
    })
    .await;
    assert!(sim.sim.stats.calls.load(Ordering::Relaxed) >= 2);

    control.request(Command::Stop).await.expect("stop accepted");
    until(&mut snapshot, LIMIT, "idle", |s| s.state == State::Idle).await;
    shutdown(&control, running, Duration::from_secs(5)).await;
}
