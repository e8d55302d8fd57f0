//! The daemon against a simulator as strict as the service, each test asking for one thing the
//! service does (see `SimOptions`): a refused or short-lived token, a skewed clock, a call from
//! a cancelled response, a failed response, a lost race for the active response, an expired
//! session. Every client event is also checked against OpenAI's published schema.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::config::{Config, TransportKind};
use realtime_voiced::control::Command;
use realtime_voiced::session::{ClientEvent, ServerEvent, State};
use realtime_voiced::transport::connector::RealtimeConnector;
use realtime_voiced::transport::token::TokenSource;
use realtime_voiced::transport::{Connector, ErrorKind, LinkEvent};
use testkit::daemon::{shutdown, until, Running};
use testkit::sim::{self, RunningSim, SimOptions};

/// How long each step may take.
const LIMIT: Duration = Duration::from_secs(15);

fn config(sim: &RunningSim, dir: &tempfile::TempDir, kind: TransportKind) -> Config {
    let key = dir.path().join("api-key");
    std::fs::write(&key, "sk-conformance-test").expect("key");
    let mut c = Config::default();
    c.api.base_url = sim.base_url();
    c.api.api_key_file = Some(key);
    c.transport.kind = kind;
    c.transport.fallback = false;
    c.transport.allow_loopback = true;
    c.transport.ice_servers = Vec::new();
    c.transport.connect_timeout_ms = 5000;
    c.transport.reconnect_backoff_ms = 100;
    c.session.idle_timeout_s = 0;
    c
}

fn stat(
    sim: &RunningSim,
    counter: impl Fn(&sim::SimStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    counter(&sim.sim.stats).load(Ordering::Relaxed)
}

/// Nothing the daemon sent fell outside the published schema.
fn assert_conformant(sim: &RunningSim) {
    let s = &sim.sim.stats;
    assert!(s.schema_checked.load(Ordering::Relaxed) > 0);
    assert_eq!(
        s.schema_violations.load(Ordering::Relaxed),
        0,
        "{:?}",
        s.violations()
    );
}

/// The daemon's loop on a real link to `sim`, started and listening.
async fn running_daemon(config: Config, dir: &tempfile::TempDir) -> Running {
    let (ctx, _mic, _speaker) = testkit::link::context(config.clone(), 500);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    let daemon = testkit::daemon::build(config, Arc::new(connector), dir.path());
    Running::listening(daemon, LIMIT).await
}

async fn eventually(what: &str, ok: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(15), async {
        while !ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {what}"));
}

async fn stop(d: Running) {
    shutdown(&d.control, d.task, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_replaced_once_on_either_transport() {
    testkit::link::install_crypto();
    for kind in [TransportKind::Webrtc, TransportKind::Websocket] {
        let sim = sim::start(SimOptions {
            strict_tokens: true,
            refuse_first_session: true,
            ..SimOptions::default()
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, _mic, _speaker) = testkit::link::context(config(&sim, &dir, kind), 8);
        let connector = RealtimeConnector::new(ctx).expect("connector");
        let link = tokio::time::timeout(Duration::from_secs(15), connector.connect(kind))
            .await
            .expect("bounded")
            .unwrap_or_else(|e| panic!("{kind}: a fresh token is let in: {e}"));
        drop(link);
        assert_eq!(stat(&sim, |s| &s.tokens_refused), 1, "{kind}");
        assert_eq!(
            stat(&sim, |s| &s.token_requests),
            2,
            "{kind}: one fresh token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_twice_is_reported_and_not_retried() {
    testkit::link::install_crypto();
    // Every token the simulator mints is already expired when used.
    let sim = sim::start(SimOptions {
        strict_tokens: true,
        token_lifetime_s: Some(0),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, _mic, _speaker) =
        testkit::link::context(config(&sim, &dir, TransportKind::Webrtc), 8);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    let err = tokio::time::timeout(
        Duration::from_secs(15),
        connector.connect(TransportKind::Webrtc),
    )
    .await
    .expect("bounded")
    .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Fatal, "{err:?}");
    assert!(err.message.contains("expired"), "{err:?}");
    assert_eq!(stat(&sim, |s| &s.token_requests), 2);
}

#[tokio::test]
async fn token_lifetimes_follow_the_servers_clock_not_the_devices() {
    testkit::link::install_crypto();
    // The service's clock a day behind this device's: by the device's clock, every token
    // has expired the moment it arrives. It is still good for the ten minutes it was given.
    let sim = sim::start(SimOptions {
        strict_tokens: true,
        clock_skew_s: -86_400,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = TokenSource::new(
        Arc::new(config(&sim, &dir, TransportKind::Webrtc)),
        serde_json::json!({"type": "realtime"}),
    )
    .expect("source");
    for _ in 0..3 {
        src.token().await.expect("token");
    }
    assert_eq!(stat(&sim, |s| &s.token_requests), 1, "one token serves");

    // A day ahead: by the device's clock a 2 s token lives a day; it is renewed in time.
    let sim = sim::start(SimOptions {
        strict_tokens: true,
        clock_skew_s: 86_400,
        token_lifetime_s: Some(2),
        ..SimOptions::default()
    })
    .await;
    let src = TokenSource::new(
        Arc::new(config(&sim, &dir, TransportKind::Webrtc)),
        serde_json::json!({"type": "realtime"}),
    )
    .expect("source");
    src.token().await.expect("token");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    src.token().await.expect("token");
    assert_eq!(
        stat(&sim, |s| &s.token_requests),
        2,
        "the dead token was replaced"
    );
}

#[tokio::test]
async fn a_call_from_a_cancelled_response_is_never_run() {
    testkit::link::install_crypto();
    let sim = sim::start(SimOptions {
        cancelled_calls: true,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, _mic, _speaker) =
        testkit::link::context(config(&sim, &dir, TransportKind::Websocket), 8);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    let mut link = connector
        .connect(TransportKind::Websocket)
        .await
        .expect("connects");
    for event in [
        ClientEvent::SessionUpdate,
        ClientEvent::UserText("what time is it".into()),
        ClientEvent::ResponseCreate,
        ClientEvent::ResponseCancel,
    ] {
        link.commands.send(event).await.expect("send");
    }
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(LinkEvent::Server(e)) = link.events.recv().await {
            seen.push(e);
        }
    })
    .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, ServerEvent::ResponseDone { .. })),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ServerEvent::FunctionCall { .. })),
        "a call of a cancelled response reached the machine: {seen:?}"
    );
    assert_conformant(&sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_response_is_shown_and_the_conversation_goes_on() {
    testkit::link::install_crypto();
    let sim = sim::start(SimOptions {
        fail_responses: 1,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = running_daemon(config(&sim, &dir, TransportKind::Websocket), &dir).await;
    d.control
        .request(|r| Command::SendText("hello".into(), r))
        .await
        .expect("text accepted");
    until(&mut d.snapshot, LIMIT, "the failure shown", |s| {
        s.stats.responses_failed == 1 && s.last_error.contains("could not answer: sim_failure")
    })
    .await;
    // Still in the conversation (speaking: nothing plays the answer out here).
    assert!(
        d.snapshot.borrow().state.is_live(),
        "{:?}",
        d.snapshot.borrow()
    );
    d.control
        .request(|r| Command::SendText("again".into(), r))
        .await
        .expect("the conversation goes on");
    until(&mut d.snapshot, LIMIT, "a second response", |s| {
        s.stats.responses == 2
    })
    .await;
    assert_eq!(d.snapshot.borrow().stats.responses_failed, 1);
    assert_conformant(&sim);
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_lost_the_race_is_sent_again() {
    testkit::link::install_crypto();
    let sim = sim::start(SimOptions {
        race_responses: 1,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = running_daemon(config(&sim, &dir, TransportKind::Websocket), &dir).await;
    d.control
        .request(|r| Command::SendText("what time is it".into(), r))
        .await
        .expect("text accepted");
    // The service's own response, then the one the daemon owed.
    eventually("the owed response", || stat(&sim, |s| &s.responses) == 2).await;
    assert_conformant(&sim);
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_replaced_without_the_user_noticing() {
    testkit::link::install_crypto();
    let sim = sim::start(SimOptions {
        session_expired_after_ms: Some(1000),
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = running_daemon(config(&sim, &dir, TransportKind::Websocket), &dir).await;
    eventually("a second session", || {
        stat(&sim, |s| &s.websocket_sessions) >= 2
    })
    .await;
    until(&mut d.snapshot, LIMIT, "listening again", |s| {
        s.state == State::Listening
    })
    .await;
    assert_eq!(
        d.snapshot.borrow().stats.sessions,
        1,
        "a rollover, not a new conversation"
    );
    assert_conformant(&sim);
    stop(d).await;
}
