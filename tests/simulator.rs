//! The `realtime-sim` binary, as the demo and other tests run it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use realtime_voiced::audio::Speaker;
use realtime_voiced::config::{Config, TransportKind};
use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::connector::RealtimeConnector;
use realtime_voiced::transport::{Connector, LinkContext, LinkEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Default)]
struct Recorder(Mutex<Vec<i16>>);

impl Speaker for Recorder {
    fn push(&self, pcm: &[i16]) {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(pcm);
        }
    }
}

/// Starts the binary and reads the address it prints.
async fn spawn(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_realtime-sim"))
        .args(["--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("realtime-sim starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("prints its address in time")
    .expect("reads stdout");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "loopback only: {addr}");
    (child, addr)
}

fn context(addr: &str, dir: &tempfile::TempDir) -> (LinkContext, Arc<Recorder>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = dir.path().join("api-key");
    std::fs::write(&key, "sk-sim-test").expect("key");
    let mut config = Config::default();
    config.api.base_url = format!("http://{addr}/v1");
    config.api.api_key_file = Some(key);
    config.transport.connect_timeout_ms = 3000;
    let (_tx, rx) = tokio::sync::mpsc::channel(4);
    let speaker = Arc::new(Recorder::default());
    let ctx = LinkContext {
        config: Arc::new(config),
        microphone: Arc::new(tokio::sync::Mutex::new(rx)),
        speaker: speaker.clone(),
    };
    (ctx, speaker)
}

#[tokio::test]
async fn the_binary_answers_a_text_turn_with_a_tone() {
    let (mut child, addr) = spawn(&["--reply", "tone"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, speaker) = context(&addr, &dir);
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
    let played = speaker.0.lock().expect("lock").clone();
    // Half a second of 660 Hz at 48 kHz.
    assert!(
        (23_000..=25_000).contains(&played.len()),
        "{}",
        played.len()
    );
    let mid = &played[4800..19_200];
    let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let freq = crossings as f64 / 2.0 / (mid.len() as f64 / 48_000.0);
    assert!((650.0..670.0).contains(&freq), "{freq} Hz");
    child.kill().await.expect("stop the simulator");
}

#[tokio::test]
async fn the_binary_refuses_tokens_and_calls_as_told() {
    let (mut child, addr) = spawn(&["--fail-token", "401"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, _) = context(&addr, &dir);
    let connector = RealtimeConnector::new(ctx).expect("connector");
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(TransportKind::Websocket),
    )
    .await
    .expect("bounded")
    .expect_err("refused");
    assert!(!e.retry);
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
    child.kill().await.expect("stop the simulator");
}
