//! The daemon's event loop and state machine driving a real WebSocket link to the simulator:
//! the machine sees only `Connector`/`Link`, the dialect and transport do the rest.

use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::audio::MicFrame;
use realtime_voiced::config::{Config, Tool, TransportKind};
use realtime_voiced::control::Command;
use realtime_voiced::session::{Role, State};
use realtime_voiced::transport::connector::RealtimeConnector;
use testkit::daemon::{shutdown, transcript, until, Running};
use testkit::signals::{frames, ms, silence, tone};
use testkit::sim::{self, SimOptions};

/// How long each step of a conversation may take.
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_conversation_over_websocket_with_a_tool_call() {
    let sim = sim::start(SimOptions {
        tool: Some("echo".into()),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("api-key");
    std::fs::write(&key, "sk-daemon-test").expect("key");
    let mut config = Config::default();
    config.api.base_url = sim.base_url();
    config.api.api_key_file = Some(key);
    config.transport.kind = TransportKind::Websocket;
    config.transport.connect_timeout_ms = 3000;
    config.session.tools = vec![Tool {
        name: "echo".into(),
        description: "Says the text back".into(),
        parameters: serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        command: None,
        timeout_ms: 1000,
    }];

    let (ctx, mic, _speaker) = testkit::link::context(config.clone(), 500);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    connector.prefetch();
    let daemon = testkit::daemon::build(config, Arc::new(connector), dir.path());
    let Running {
        control,
        mut snapshot,
        mut transcripts,
        task: running,
    } = Running::listening(daemon, LIMIT).await;
    assert_eq!(snapshot.borrow().transport, TransportKind::Websocket);

    // Typed text: the simulated model calls `echo` first, the daemon runs it, then it answers.
    control
        .request(|r| Command::SendText("hello daemon".into(), r))
        .await
        .expect("text accepted");
    assert_eq!(
        transcript(&mut transcripts, Role::Assistant, LIMIT).await,
        "you said: hello daemon; the tool said: hello daemon"
    );

    // Spoken input: 600 ms of tone and enough silence to end the turn.
    let mut spoken = tone(500.0, 6000.0, ms(600));
    spoken.extend(silence(ms(800)));
    for frame in frames(&spoken) {
        mic.send(MicFrame::heard_now(frame)).await.expect("mic");
    }
    let heard = transcript(&mut transcripts, Role::User, LIMIT).await;
    assert!(heard.starts_with("heard "), "{heard}");

    // (The snapshot takes the session id with the stats of a finished response.)
    until(&mut snapshot, LIMIT, "a session id", |s| {
        s.session_id.starts_with("sess_sim_")
    })
    .await;
    let stats = snapshot.borrow().stats.clone();
    assert!(stats.responses >= 2, "{stats:?}");
    assert!(stats.tokens_used > 0, "{stats:?}");

    control.request(Command::Stop).await.expect("stop accepted");
    until(&mut snapshot, LIMIT, "idle", |s| s.state == State::Idle).await;
    assert_eq!(snapshot.borrow().last_error, "");
    shutdown(&control, running, Duration::from_secs(3)).await;
}
