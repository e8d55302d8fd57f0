//! The daemon's event loop with a scripted in-process connector: what it sends to the service
//! and how it answers, without sockets or sound cards.

use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::config::{Config, Memory, Tool, TransportKind};
use realtime_voiced::control::{Command, ControlHandle, Refusal};
use realtime_voiced::session::{ClientEvent, Role, ServerEvent, State};
use realtime_voiced::transport::{ConnectFuture, Connector, Link, LinkEvent};
use tokio::sync::mpsc;

/// The far end of a link, held by the test.
struct Far {
    from_daemon: mpsc::Receiver<ClientEvent>,
    to_daemon: mpsc::Sender<LinkEvent>,
}

struct Scripted(mpsc::Sender<Far>);

impl Connector for Scripted {
    fn connect(&self, kind: TransportKind) -> ConnectFuture<'_> {
        Box::pin(async move {
            let (cmd_tx, cmd_rx) = mpsc::channel(64);
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let _ = self
                .0
                .send(Far {
                    from_daemon: cmd_rx,
                    to_daemon: ev_tx,
                })
                .await;
            Ok(Link {
                kind,
                commands: cmd_tx,
                events: ev_rx,
            })
        })
    }
}

const STEP: Duration = Duration::from_secs(5);

async fn next<T>(rx: &mut mpsc::Receiver<T>) -> T {
    tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("in time")
        .expect("open")
}

async fn wait_state(handle: &ControlHandle, want: State) {
    let mut watch = handle.snapshot.clone();
    tokio::time::timeout(STEP, watch.wait_for(|s| s.state == want))
        .await
        .unwrap_or_else(|_| panic!("state {want:?} not reached"))
        .expect("watch");
}

fn start(config: Config, state_dir: &std::path::Path) -> (ControlHandle, mpsc::Receiver<Far>) {
    let (far_tx, far_rx) = mpsc::channel(8);
    let daemon = testkit::daemon::build(config, Arc::new(Scripted(far_tx)), state_dir);
    let handle = daemon.handle();
    tokio::spawn(daemon.run());
    (handle, far_rx)
}

fn config() -> Config {
    let mut c = Config::default();
    c.audio.earcons = false;
    c.session.tools = vec![Tool {
        name: "echo".into(),
        description: String::new(),
        parameters: serde_json::json!({"type": "object"}),
        command: None,
        timeout_ms: 1000,
    }];
    c
}

#[tokio::test]
async fn session_update_then_memory_then_a_tool_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config();
    c.session.memory = Memory::On;
    let (handle, mut links) = start(c.clone(), dir.path());

    handle.request(Command::Start).await.expect("start");
    let mut far = next(&mut links).await;
    assert_eq!(next(&mut far.from_daemon).await, ClientEvent::SessionUpdate);
    wait_state(&handle, State::Listening).await;

    let mut transcripts = handle.transcripts.subscribe();
    far.to_daemon
        .send(LinkEvent::Server(ServerEvent::InputTranscript {
            text: "remember the milk".into(),
        }))
        .await
        .expect("send");
    let t = tokio::time::timeout(STEP, transcripts.recv())
        .await
        .expect("in time")
        .expect("transcript");
    assert_eq!((t.role, t.text.as_str()), (Role::User, "remember the milk"));

    far.to_daemon
        .send(LinkEvent::Server(ServerEvent::FunctionCall {
            call_id: "call_1".into(),
            name: "echo".into(),
            arguments: r#"{"text":"pong"}"#.into(),
        }))
        .await
        .expect("send");
    assert_eq!(
        next(&mut far.from_daemon).await,
        ClientEvent::FunctionOutput {
            call_id: "call_1".into(),
            output: "pong".into()
        }
    );
    assert_eq!(
        next(&mut far.from_daemon).await,
        ClientEvent::ResponseCreate
    );

    // A new session is given what the device remembers.
    handle.request(Command::Stop).await.expect("stop");
    wait_state(&handle, State::Idle).await;
    handle.request(Command::Start).await.expect("start again");
    let mut far = next(&mut links).await;
    assert_eq!(next(&mut far.from_daemon).await, ClientEvent::SessionUpdate);
    assert_eq!(
        next(&mut far.from_daemon).await,
        ClientEvent::HistoryItem {
            role: Role::User,
            text: "remember the milk".into()
        }
    );
    handle
        .commands
        .send(Command::Shutdown)
        .await
        .expect("shutdown");
}

#[tokio::test]
async fn send_text_needs_a_live_session_and_stop_needs_an_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, _links) = start(config(), dir.path());
    let err = handle
        .request(|r| Command::SendText("hello".into(), r))
        .await
        .expect_err("idle");
    assert!(matches!(err, Refusal::NotActive(_)), "{err:?}");
    let err = handle.request(Command::Stop).await.expect_err("idle");
    assert!(matches!(err, Refusal::NotActive(_)));
}

#[tokio::test]
async fn a_spent_daily_budget_refuses_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config();
    c.session.daily_limit_s = 60;
    std::fs::write(
        dir.path().join("daily-usage.json"),
        format!(
            r#"{{"day":{},"used_s":61.0}}"#,
            realtime_voiced::daemon::budget::local_day(std::time::SystemTime::now())
        ),
    )
    .expect("write");
    let (handle, _links) = start(c, dir.path());
    let err = handle
        .request(Command::Start)
        .await
        .expect_err("over budget");
    assert!(
        matches!(&err, Refusal::LimitReached(m) if m.contains("1 min")),
        "{err:?}"
    );
    let err = handle
        .request(Command::Toggle)
        .await
        .expect_err("over budget");
    assert!(matches!(err, Refusal::LimitReached(_)));
    assert_eq!(handle.snapshot.borrow().state, State::Idle);
}

#[tokio::test]
async fn a_lost_link_reconnects_with_a_fresh_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config();
    c.transport.reconnect_backoff_ms = 20;
    let (handle, mut links) = start(c, dir.path());
    handle.request(Command::Start).await.expect("start");
    let far = next(&mut links).await;
    wait_state(&handle, State::Listening).await;
    far.to_daemon
        .send(LinkEvent::Closed {
            reason: "peer went away".into(),
        })
        .await
        .expect("send");
    let mut far2 = next(&mut links).await;
    assert_eq!(
        next(&mut far2.from_daemon).await,
        ClientEvent::SessionUpdate
    );
    wait_state(&handle, State::Listening).await;
    assert_eq!(handle.snapshot.borrow().stats.reconnects, 1);
}

/// A connector without credentials.
struct Keyless;

impl Connector for Keyless {
    fn ready(&self) -> Result<(), String> {
        Err("no API key: put it in /etc/realtime-voiced/api-key".into())
    }

    fn connect(&self, _kind: TransportKind) -> ConnectFuture<'_> {
        Box::pin(async {
            Err(realtime_voiced::transport::ConnectError::fatal(
                "no API key",
            ))
        })
    }
}

#[tokio::test]
async fn start_without_credentials_is_refused_and_the_device_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = testkit::daemon::build(config(), Arc::new(Keyless), dir.path());
    let handle = daemon.handle();
    tokio::spawn(daemon.run());
    let err = handle.request(Command::Start).await.expect_err("no key");
    assert!(
        matches!(&err, Refusal::NotConfigured(m) if m.contains("no API key")),
        "{err:?}"
    );
    // The LED, the earcon and LastError tell the person at the device, too.
    wait_state(&handle, State::Error).await;
    assert!(handle.snapshot.borrow().last_error.contains("no API key"));
    // Toggle from error starts again, and is refused the same way.
    let err = handle.request(Command::Toggle).await.expect_err("no key");
    assert!(matches!(err, Refusal::NotConfigured(_)));
}

/// A connector that says which generation of the configuration made it and, on a reload,
/// hands over to the next one.
struct Generation {
    voice: String,
    links: mpsc::Sender<(String, Far)>,
}

impl Connector for Generation {
    fn connect(&self, kind: TransportKind) -> ConnectFuture<'_> {
        Box::pin(async move {
            let (cmd_tx, cmd_rx) = mpsc::channel(64);
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let far = Far {
                from_daemon: cmd_rx,
                to_daemon: ev_tx,
            };
            let _ = self.links.send((self.voice.clone(), far)).await;
            Ok(Link {
                kind,
                commands: cmd_tx,
                events: ev_rx,
            })
        })
    }

    fn reconfigured(&self, config: &Arc<Config>) -> Option<Arc<dyn Connector>> {
        Some(Arc::new(Generation {
            voice: config.session.voice.clone(),
            links: self.links.clone(),
        }))
    }
}

/// A reload reaches the next connect (not the one in progress), and a volume set over D-Bus
/// survives a reload that leaves `audio.volume` alone, but not one that changes it.
#[tokio::test]
async fn a_reload_applies_from_the_next_connect_and_to_a_changed_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config();
    let (links_tx, mut links) = mpsc::channel(8);
    let connector = Arc::new(Generation {
        voice: c.session.voice.clone(),
        links: links_tx,
    });
    let daemon = testkit::daemon::build(c.clone(), connector, dir.path());
    let handle = daemon.handle();
    tokio::spawn(daemon.run());
    let volume = |h: &ControlHandle| h.snapshot.borrow().volume;

    handle.request(Command::Start).await.expect("start");
    let (voice, _far) = next(&mut links).await;
    assert_eq!(voice, "alloy");
    wait_state(&handle, State::Listening).await;

    handle
        .commands
        .send(Command::SetVolume(0.3))
        .await
        .expect("send");
    let mut reloaded = c.clone();
    reloaded.session.voice = "verse".into();
    handle
        .commands
        .send(Command::Reload(Box::new(reloaded.clone())))
        .await
        .expect("send");
    // The conversation in progress keeps its link.
    handle.request(Command::Stop).await.expect("stop");
    wait_state(&handle, State::Idle).await;
    assert!(
        (volume(&handle) - 0.3).abs() < 1e-9,
        "an unrelated reload reset the volume"
    );

    handle.request(Command::Start).await.expect("start");
    let (voice, _far) = next(&mut links).await;
    assert_eq!(voice, "verse");

    reloaded.audio.volume = 0.6;
    handle
        .commands
        .send(Command::Reload(Box::new(reloaded)))
        .await
        .expect("send");
    let mut watch = handle.snapshot.clone();
    tokio::time::timeout(STEP, watch.wait_for(|s| (s.volume - 0.6).abs() < 1e-9))
        .await
        .expect("the configured volume applied")
        .expect("watch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_tool_calls_gets_every_output_to_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, mut links) = start(config(), dir.path());
    handle.request(Command::Start).await.expect("start");
    let mut far = next(&mut links).await;
    assert_eq!(next(&mut far.from_daemon).await, ClientEvent::SessionUpdate);
    wait_state(&handle, State::Listening).await;

    // A thousand calls in one burst, while the far end reads nothing: the link's queue
    // (64 events) fills long before the last output.
    const CALLS: usize = 1000;
    for i in 0..CALLS {
        far.to_daemon
            .send(LinkEvent::Server(ServerEvent::FunctionCall {
                call_id: format!("call_{i}"),
                name: "echo".into(),
                arguments: format!(r#"{{"text":"{i}"}}"#),
            }))
            .await
            .expect("send");
    }
    let mut outputs = std::collections::BTreeSet::new();
    while outputs.len() < CALLS {
        match next(&mut far.from_daemon).await {
            ClientEvent::FunctionOutput { call_id, output } => {
                assert_eq!(call_id, format!("call_{output}"));
                outputs.insert(call_id);
            }
            ClientEvent::ResponseCreate => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        outputs.len(),
        CALLS,
        "every output reached the service, once"
    );
}
