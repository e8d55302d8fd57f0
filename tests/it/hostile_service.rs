//! A service that misbehaves at volume: the daemon's log stays readable. 20,000 malformed
//! events in a burst give a handful of warning lines and one that counts the rest.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::SinkExt;
use testkit::bus::Bus;
use testkit::sim::{self, SimOptions};
use testkit::{wait_for, Proc};

use crate::DAEMON;

const EVENTS: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_events_gives_a_few_lines_that_count_the_rest() {
    // Tokens from the simulator, the conversation with a WebSocket server that sends garbage.
    let tokens = sim::start(SimOptions::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        for i in 0..EVENTS {
            let garbage = format!("{{\"type\":\"session.created\",\"session\":{i}}}");
            if ws.send(garbage.into()).await.is_err() {
                return;
            }
        }
        let _ = sent_tx.send(());
        // Then it goes quiet and closes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = ws.close(None).await;
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Bus::session(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"http://{addr}/v1\"\ntoken_url = \"{}/token\"\ntoken_url_headers = {{ Authorization = \"Bearer backend-credential\" }}\n\
             [transport]\nkind = \"websocket\"\nfallback = false\nreconnect_attempts = 0\n\
             [audio]\ncapture_device = \"null\"\nplayback_device = \"null\"\n[dbus]\nbus = \"session\"\n",
            tokens.base_url()
        ),
    )
    .expect("config");
    let log = dir.path().join("daemon.log");
    let mut daemon = Proc::spawn(
        Command::new(DAEMON)
            .args(["--config", config.to_str().expect("utf-8"), "--start"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("OPENAI_API_KEY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log")),
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    tokio::time::timeout(Duration::from_secs(20), sent_rx)
        .await
        .unwrap_or_else(|_| panic!("the flood was not sent in time:\n{}", read()))
        .expect("sent");
    wait_for(Duration::from_secs(20), "the link to end", || {
        read().contains("held back").then_some(())
    });
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(5)).expect("exits");
    let text = read();
    let warnings = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("malformed"))
        .count();
    eprintln!(
        "{EVENTS} malformed events: {warnings} warning lines, {} lines in all",
        text.lines().count()
    );
    assert!((1..=5).contains(&warnings), "{warnings} lines:\n{text}");
    let held = text
        .lines()
        .find(|l| l.contains("were held back"))
        .unwrap_or_default();
    assert!(
        held.contains(&format!("{} more warnings", EVENTS - warnings)),
        "{held}"
    );
}
