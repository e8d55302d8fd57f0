//! The daemon's event loop and state machine driving a real WebSocket link to the simulator:
//! the machine sees only `Connector`/`Link`, the dialect and transport do the rest.

use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::audio::{Frame, NullAudio, FRAME_SAMPLES};
use realtime_voiced::config::{Config, Tool, TransportKind};
use realtime_voiced::control::{Command, Snapshot, Transcript};
use realtime_voiced::daemon::{Daemon, Parts};
use realtime_voiced::session::{Role, State};
use realtime_voiced::simulator::server;
use realtime_voiced::simulator::{Sim, SimOptions};
use realtime_voiced::tools::Tools;
use realtime_voiced::transport::connector::RealtimeConnector;
use realtime_voiced::transport::LinkContext;
use tokio::sync::{broadcast, watch};

async fn wait_for(
    snapshot: &mut watch::Receiver<Snapshot>,
    what: &str,
    ok: impl Fn(&Snapshot) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if ok(&snapshot.borrow_and_update()) {
                return;
            }
            snapshot.changed().await.expect("daemon alive");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {what}: {:?}", snapshot.borrow()));
}

async fn wait_state(snapshot: &mut watch::Receiver<Snapshot>, want: State) {
    wait_for(snapshot, want.as_str(), |s| s.state == want).await;
}

async fn transcript(rx: &mut broadcast::Receiver<Transcript>, role: Role) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let t = rx.recv().await.expect("transcripts");
            if t.role == role {
                return t.text;
            }
        }
    })
    .await
    .expect("a transcript in time")
}

#[tokio::test]
async fn a_conversation_over_websocket_with_a_tool_call() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = server::start(Sim::new(SimOptions {
        tool: Some("echo".into()),
        ..SimOptions::default()
    }))
    .await
    .expect("simulator");
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

    let (mic, mic_rx) = tokio::sync::mpsc::channel::<Frame>(500);
    let ctx = LinkContext {
        config: Arc::new(config.clone()),
        microphone: Arc::new(tokio::sync::Mutex::new(mic_rx)),
        speaker: Arc::new(NullAudio),
    };
    let connector = RealtimeConnector::new(ctx).expect("connector");
    connector.prefetch();
    let tools = Tools::new(&config.session.tools);
    let daemon = Daemon::new(
        config,
        Parts {
            connector: Arc::new(connector),
            audio: Arc::new(NullAudio),
            tools: Arc::new(tools),
            state_dir: std::env::temp_dir().join("rtv-transport-daemon-test"),
        },
    );
    let control = daemon.handle();
    let mut transcripts = control.transcripts.subscribe();
    let mut snapshot = control.snapshot.clone();
    let running = tokio::spawn(daemon.run());

    control
        .request(Command::Start)
        .await
        .expect("start accepted");
    wait_state(&mut snapshot, State::Listening).await;
    assert_eq!(snapshot.borrow().transport, TransportKind::Websocket);

    // Typed text: the simulated model calls `echo` first, the daemon runs it, then it answers.
    control
        .request(|r| Command::SendText("hello daemon".into(), r))
        .await
        .expect("text accepted");
    assert_eq!(
        transcript(&mut transcripts, Role::Assistant).await,
        "you said: hello daemon; the tool said: hello daemon"
    );

    // Spoken input: 600 ms of tone and enough silence to end the turn.
    let mut frames = Vec::new();
    for f in 0..30 {
        let mut frame = [0i16; FRAME_SAMPLES];
        for (i, s) in frame.iter_mut().enumerate() {
            let n = (f * FRAME_SAMPLES + i) as f64;
            *s = (6000.0 * (2.0 * std::f64::consts::PI * 500.0 * n / 48_000.0).sin()) as i16;
        }
        frames.push(frame);
    }
    frames.extend(vec![[0i16; FRAME_SAMPLES]; 40]);
    for frame in frames {
        mic.send(frame).await.expect("mic");
    }
    let heard = transcript(&mut transcripts, Role::User).await;
    assert!(heard.starts_with("heard "), "{heard}");

    // (The snapshot takes the session id with the stats of a finished response.)
    wait_for(&mut snapshot, "a session id", |s| {
        s.session_id.starts_with("sess_sim_")
    })
    .await;
    let stats = snapshot.borrow().stats.clone();
    assert!(stats.responses >= 2, "{stats:?}");
    assert!(stats.tokens_used > 0, "{stats:?}");

    control.request(Command::Stop).await.expect("stop accepted");
    wait_state(&mut snapshot, State::Idle).await;
    assert_eq!(snapshot.borrow().last_error, "");
    let _ = control.commands.send(Command::Shutdown).await;
    tokio::time::timeout(Duration::from_secs(3), running)
        .await
        .expect("daemon stops")
        .expect("daemon task");
}
