//! The WebSocket transport, through `RealtimeConnector`, against the realtime simulator and a
//! deliberately hostile server, all on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use realtime_voiced::audio::{Frame, MicFrame};
use realtime_voiced::config::{Config, Secret, TransportKind};
use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::connector::RealtimeConnector;
use realtime_voiced::transport::{websocket, Connector, Link, LinkContext, LinkEvent};
use testkit::link::websocket_dialect;
use testkit::signals::{frames, goertzel, ms, rms, silence, tone, zero_crossing_hz};
use testkit::sim::{self, SimOptions};
use testkit::speaker::RecordingSpeaker;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "sk-test-websocket-key";

struct Rig {
    ctx: LinkContext,
    mic: mpsc::Sender<MicFrame>,
    speaker: Arc<RecordingSpeaker>,
    _dir: tempfile::TempDir,
}

fn make_rig(base_url: &str) -> Rig {
    testkit::link::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("api-key");
    std::fs::write(&key, KEY).expect("write key");
    let mut config = Config::default();
    config.api.base_url = base_url.to_owned();
    config.api.api_key_file = Some(key);
    config.transport.kind = TransportKind::Websocket;
    config.transport.connect_timeout_ms = 3000;
    config.transport.allow_loopback = true;
    let (ctx, mic, speaker) = testkit::link::context(config, 1000);
    Rig {
        ctx,
        mic,
        speaker,
        _dir: dir,
    }
}

async fn connect(rig: &Rig) -> Link {
    let connector = RealtimeConnector::new(rig.ctx.clone()).expect("connector");
    tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(TransportKind::Websocket),
    )
    .await
    .expect("connect is bounded")
    .expect("connects")
}

/// The next server event (fails on close or after `secs`).
async fn next(link: &mut Link, secs: u64) -> ServerEvent {
    match tokio::time::timeout(Duration::from_secs(secs), link.events.recv()).await {
        Ok(Some(LinkEvent::Server(e))) => e,
        other => panic!("expected a server event, got {other:?}"),
    }
}

/// Events up to and including the first that matches.
async fn until(
    link: &mut Link,
    secs: u64,
    stop: impl Fn(&ServerEvent) -> bool,
) -> Vec<ServerEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, link.events.recv()).await {
            Ok(Some(LinkEvent::Server(e))) => {
                let done = stop(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            other => panic!("after {seen:?}: {other:?}"),
        }
    }
}

/// `count` 20 ms frames of a `freq` Hz tone at the level the tests speak at.
fn sine_frames(freq: f64, count: usize) -> Vec<Frame> {
    frames(&tone(freq, 8000.0, ms(20 * count)))
}

#[tokio::test]
async fn speech_goes_in_and_comes_back_out() {
    let sim = sim::start(SimOptions::default()).await;
    let rig = make_rig(&sim.base_url());
    let mut link = connect(&rig).await;
    assert_eq!(link.kind, TransportKind::Websocket);
    assert!(
        matches!(next(&mut link, 5).await, ServerEvent::SessionCreated { session_id } if session_id.starts_with("sess_sim_"))
    );
    link.commands
        .send(ClientEvent::SessionUpdate)
        .await
        .expect("send");
    assert_eq!(next(&mut link, 5).await, ServerEvent::SessionUpdated);

    // 200 ms of silence, a 1 s 440 Hz burst, then 800 ms of silence to end the turn.
    let mut spoken = silence(ms(200));
    spoken.extend(tone(440.0, 8000.0, ms(1000)));
    spoken.extend(silence(ms(800)));
    for frame in frames(&spoken) {
        rig.mic.send(MicFrame::heard_now(frame)).await.expect("mic");
    }

    let events = until(&mut link, 15, |e| {
        matches!(e, ServerEvent::ResponseDone { .. })
    })
    .await;
    let index = |f: &dyn Fn(&ServerEvent) -> bool| {
        events
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("missing in {events:?}"))
    };
    let started = index(&|e| matches!(e, ServerEvent::SpeechStarted { item_id: Some(_) }));
    let stopped = index(&|e| matches!(e, ServerEvent::SpeechStopped));
    let heard = index(
        &|e| matches!(e, ServerEvent::InputTranscript { text } if text.starts_with("heard ")),
    );
    let created = index(&|e| matches!(e, ServerEvent::ResponseCreated { .. }));
    let audio = index(&|e| matches!(e, ServerEvent::AudioStarted { item_id: Some(_) }));
    let audio_end = index(&|e| matches!(e, ServerEvent::AudioStopped { .. }));
    let said = index(&|e| matches!(e, ServerEvent::AssistantTranscript { .. }));
    assert!(
        started < stopped && stopped < heard && heard < created,
        "{events:?}"
    );
    assert!(
        created < audio && audio < audio_end && audio_end < said,
        "{events:?}"
    );
    let audio_starts = events
        .iter()
        .filter(|e| matches!(e, ServerEvent::AudioStarted { .. }))
        .count();
    assert_eq!(audio_starts, 1, "one AudioStarted per item");
    match events.last() {
        Some(ServerEvent::ResponseDone { usage: Some(u), .. }) => assert!(u.total_tokens > 0),
        other => panic!("{other:?}"),
    }

    // What the speaker got: about 1 s of a 440 Hz tone at the level it went in.
    let played = rig.speaker.take();
    let blocks: Vec<f64> = played.chunks(480).map(rms).collect();
    let loud: Vec<usize> = (0..blocks.len()).filter(|&i| blocks[i] > 2000.0).collect();
    let (first, last) = (loud[0], loud[loud.len() - 1]);
    let loud_ms = (last - first + 1) * 10;
    assert!(
        (960..=1060).contains(&loud_ms),
        "{loud_ms} ms of tone came back"
    );
    let tone = &played[(first + 2) * 480..(last - 1) * 480];
    let freq = zero_crossing_hz(tone);
    assert!((435.0..445.0).contains(&freq), "{freq} Hz");
    let rms = rms(tone);
    assert!(
        (0.85..1.15).contains(&(rms / (8000.0 / 2f64.sqrt()))),
        "level {rms}"
    );
    let purity = goertzel(tone, 440.0) / goertzel(tone, 1000.0);
    eprintln!(
        "echo: {loud_ms} ms of tone at {freq:.1} Hz, rms {rms:.0}, 440/1000 Hz power {purity:.0}"
    );
    assert!(purity > 100.0);
}

#[tokio::test]
async fn text_turns_and_the_one_active_response_rule() {
    let sim = sim::start(SimOptions::default()).await;
    let rig = make_rig(&sim.base_url());
    let mut link = connect(&rig).await;
    next(&mut link, 5).await;
    for event in [
        ClientEvent::SessionUpdate,
        ClientEvent::UserText("hello there".into()),
        ClientEvent::ResponseCreate,
        ClientEvent::ResponseCreate,
    ] {
        link.commands.send(event).await.expect("send");
    }
    let events = until(&mut link, 10, |e| {
        matches!(e, ServerEvent::ResponseDone { .. })
    })
    .await;
    assert!(events.iter().any(|e| matches!(e,
        ServerEvent::Error { code: Some(c), .. } if c == "conversation_already_has_active_response")));
    assert!(events.iter().any(|e| matches!(e,
        ServerEvent::AssistantTranscript { text } if text == "you said: hello there")));

    // Letting go of the commands hangs up: the link's events end without a word.
    let Link {
        commands,
        mut events,
        ..
    } = link;
    drop(commands);
    let end = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(e) = events.recv().await {
            assert!(!matches!(e, LinkEvent::Closed { .. }), "{e:?}");
        }
    })
    .await;
    assert!(end.is_ok(), "the link ended");
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let sim = sim::start(SimOptions {
        tool: Some("echo".into()),
        ..SimOptions::default()
    })
    .await;
    let rig = make_rig(&sim.base_url());
    let mut link = connect(&rig).await;
    next(&mut link, 5).await;
    link.commands
        .send(ClientEvent::UserText("ping".into()))
        .await
        .expect("send");
    link.commands
        .send(ClientEvent::ResponseCreate)
        .await
        .expect("send");
    let events = until(&mut link, 10, |e| {
        matches!(e, ServerEvent::FunctionCall { .. })
    })
    .await;
    let Some(ServerEvent::FunctionCall {
        call_id,
        name,
        arguments,
    }) = events.last().cloned()
    else {
        panic!("{events:?}");
    };
    assert_eq!(name, "echo");
    assert_eq!(arguments, r#"{"text":"ping"}"#);
    until(&mut link, 5, |e| {
        matches!(e, ServerEvent::ResponseDone { .. })
    })
    .await;
    link.commands
        .send(ClientEvent::FunctionOutput {
            call_id,
            output: "ping".into(),
        })
        .await
        .expect("send");
    link.commands
        .send(ClientEvent::ResponseCreate)
        .await
        .expect("send");
    let events = until(&mut link, 10, |e| {
        matches!(e, ServerEvent::ResponseDone { .. })
    })
    .await;
    assert!(events
        .iter()
        .any(|e| matches!(e, ServerEvent::AudioStarted { .. })));
}

#[tokio::test]
async fn a_dropped_connection_is_reported_once() {
    let sim = sim::start(SimOptions {
        drop_after_ms: Some(300),
        ..SimOptions::default()
    })
    .await;
    let rig = make_rig(&sim.base_url());
    let mut link = connect(&rig).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match link.events.recv().await {
                Some(LinkEvent::Closed { reason }) => return reason,
                Some(LinkEvent::Server(_)) => {}
                None => panic!("ended without Closed"),
            }
        }
    })
    .await
    .expect("closed in time");
    // The cause, once: the machine puts "connection lost: " before it.
    assert!(closed.starts_with("the WebSocket"), "{closed}");
    assert!(!closed.contains("connection lost"), "{closed}");
    assert!(!closed.contains('\n'));
    assert!(
        tokio::time::timeout(Duration::from_secs(2), link.events.recv())
            .await
            .expect("ends")
            .is_none()
    );
}

#[tokio::test]
async fn hostile_server_input_is_dropped_and_the_link_goes_on() {
    testkit::link::install_crypto();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (auth_tx, auth_rx) = tokio::sync::oneshot::channel::<String>();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<bool>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut auth = String::new();
        #[allow(clippy::result_large_err)] // the handshake's own error type
        let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(req.uri().path(), "/v1/realtime");
            assert_eq!(req.uri().query(), Some("model=gpt-realtime-2.1"));
            Ok(resp)
        };
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let mut ws = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config))
            .await
            .expect("handshake");
        let _ = auth_tx.send(auth);
        let huge = format!(
            r#"{{"type":"response.output_audio.delta","item_id":"i","delta":"{}"}}"#,
            "A".repeat(10 << 20)
        );
        for text in [
            "this is not json".to_owned(),
            r#"{"type":"mystery.event","x":1}"#.to_owned(),
            r#"{"type":"response.function_call_arguments.done","name":42}"#.to_owned(),
            huge,
            r#"{"type":"session.created","session":{"id":"sess_after"}}"#.to_owned(),
        ] {
            ws.send(Message::text(text)).await.expect("send");
        }
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        let _ = closed_tx.send(closed);
    });

    let rig = make_rig(&format!("http://{addr}/v1"));
    let dialect = websocket_dialect(&rig.ctx);
    let mut link = tokio::time::timeout(
        Duration::from_secs(5),
        websocket::connect(&rig.ctx, dialect, &Secret::new("ek_test_token")),
    )
    .await
    .expect("bounded")
    .expect("connects");
    assert_eq!(auth_rx.await.expect("auth"), "Bearer ek_test_token");
    assert_eq!(
        next(&mut link, 10).await,
        ServerEvent::SessionCreated {
            session_id: "sess_after".into()
        }
    );
    assert!(
        rig.speaker.take().is_empty(),
        "the huge delta was not played"
    );
    drop(link.commands);
    assert!(
        closed_rx.await.expect("server result"),
        "the client sent a close frame"
    );
}

#[tokio::test]
async fn dead_ports_and_refusals_are_one_clear_line() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let rig = make_rig(&format!("http://127.0.0.1:{port}/v1"));
    let dialect = websocket_dialect(&rig.ctx);
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        websocket::connect(&rig.ctx, dialect, &Secret::new("ek_x")),
    )
    .await
    .expect("bounded")
    .expect_err("refused");
    assert!(e.is_retryable());
    assert!(
        e.message.contains(&format!("127.0.0.1:{port}")),
        "{}",
        e.message
    );
    assert!(!e.message.contains('\n'));

    // Through the connector, the token request fails first, as clearly.
    let connector = RealtimeConnector::new(rig.ctx.clone()).expect("connector");
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        connector.connect(TransportKind::Websocket),
    )
    .await
    .expect("bounded")
    .expect_err("fails");
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        !e.message.contains(KEY) && !e.message.contains('\n'),
        "{}",
        e.message
    );

    // The simulator refuses a WebSocket without a credential.
    let sim = sim::start(SimOptions::default()).await;
    let sim_rig = make_rig(&sim.base_url());
    let dialect = websocket_dialect(&sim_rig.ctx);
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        websocket::connect(&sim_rig.ctx, dialect, &Secret::new("")),
    )
    .await
    .expect("bounded")
    .expect_err("refused");
    assert!(e.message.contains("HTTP 401"), "{}", e.message);
    assert!(
        e.message.contains("didn't provide an API key"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn webrtc_without_its_transport_fails_retryably() {
    let sim = sim::start(SimOptions::default()).await;
    let rig = make_rig(&sim.base_url());
    let connector = RealtimeConnector::new(rig.ctx.clone()).expect("connector");
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(TransportKind::Webrtc),
    )
    .await
    .expect("bounded");
    // With the WebRTC transport built in this connects; without it, it must be retryable so
    // that the WebSocket fallback runs.
    match result {
        Ok(link) => assert_eq!(link.kind, TransportKind::Webrtc),
        Err(e) => assert!(e.is_retryable(), "{e:?}"),
    }
}

#[tokio::test]
async fn a_message_beyond_the_socket_limit_ends_the_link_clearly() {
    testkit::link::install_crypto();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        let enormous = format!(r#"{{"type":"x","pad":"{}"}}"#, "A".repeat(20 << 20));
        let _ = ws.send(Message::text(enormous)).await;
        // Stay open: the client must end the link on its own.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let rig = make_rig(&format!("http://{addr}/v1"));
    let dialect = websocket_dialect(&rig.ctx);
    let mut link = tokio::time::timeout(
        Duration::from_secs(5),
        websocket::connect(&rig.ctx, dialect, &Secret::new("ek_test_token")),
    )
    .await
    .expect("bounded")
    .expect("connects");
    match tokio::time::timeout(Duration::from_secs(10), link.events.recv()).await {
        Ok(Some(LinkEvent::Closed { reason })) => {
            assert!(reason.contains("oversized"), "{reason}");
            assert!(!reason.contains('\n'));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_new_link_takes_the_microphone_when_the_old_one_lets_go() {
    let sim = sim::start(SimOptions::default()).await;
    let rig = make_rig(&sim.base_url());
    let mut old = connect(&rig).await;
    next(&mut old, 5).await;
    let mut new = connect(&rig).await;
    // The new link works at once, though the old one still holds the microphone.
    assert!(matches!(
        next(&mut new, 5).await,
        ServerEvent::SessionCreated { .. }
    ));
    drop(old.commands);
    for frame in sine_frames(440.0, 20) {
        rig.mic.send(MicFrame::heard_now(frame)).await.expect("mic");
    }
    let events = until(&mut new, 5, |e| {
        matches!(e, ServerEvent::SpeechStarted { .. })
    })
    .await;
    assert!(!events.is_empty());
}
