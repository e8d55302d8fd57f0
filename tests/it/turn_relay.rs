//! A relay-only call through a real TURN server (coturn on 127.0.0.1): it connects, carries
//! events and audio, and offers nothing but relay candidates. A wrong TURN credential fails
//! fast with one clear line.
//!
//! Each test runs in a process of its own: it reads the transport's log lines, which go to the
//! one log subscriber of its process.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realtime_voiced::config::{IcePolicy, IceServer, Secret};
use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::{webrtc, LinkEvent};
use testkit::aiortc::fetch_stats;
use testkit::link::{
    context, install_crypto, loopback_config, play_tone_burst, webrtc_connected, webrtc_dialect,
};
use testkit::signals::analyse;
use testkit::Proc;
use tokio::time::timeout;

const TOKEN: &str = "test-ephemeral-token";

/// Log lines of the daemon's code, kept so a test can check what the transport reported.
static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = LOG.lock() {
            log.extend_from_slice(buf);
        }
        std::io::stderr().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("realtime_voiced=info")
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
    install_crypto();
}

fn logged() -> String {
    LOG.lock()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default()
}

/// coturn on 127.0.0.1 with one long-term user `u:p`, relaying to loopback peers.
struct Turn {
    _proc: Proc,
    _dir: tempfile::TempDir,
    url: String,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_turn(relay_ports: (u16, u16)) -> Option<Turn> {
    if Command::new("turnserver")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_udp_port();
    let mut proc = Proc::spawn(
        Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={}", relay_ports.0))
            .arg(format!("--max-port={}", relay_ports.1))
            .args(["--realm=test.local", "--lt-cred-mech", "--user=u:p"])
            .arg(format!("--userdb={}", dir.path().join("turndb").display()))
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
            ])
            .args(["--log-file=stdout", "--simple-log"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    proc.line_starting("", Duration::from_secs(10))
        .expect("turnserver speaks");
    // Its listeners are up a moment after the first lines.
    std::thread::sleep(Duration::from_millis(500));
    Some(Turn {
        _proc: proc,
        _dir: dir,
        url: format!("turn:127.0.0.1:{port}?transport=udp"),
    })
}

fn relay_config(base: &str, turn: &Turn, password: &str) -> realtime_voiced::config::Config {
    let mut config = loopback_config(base);
    config.transport.ice_transport_policy = IcePolicy::Relay;
    config.transport.ice_servers = vec![IceServer {
        urls: vec![turn.url.clone()],
        username: Some("u".into()),
        credential: Some(Secret::new(password)),
    }];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_call_to_aiortc_goes_through_turn() {
    if testkit::rerun_alone!(
        relay_only_call_to_aiortc_goes_through_turn,
        Duration::from_secs(600)
    ) {
        return;
    }
    capture_logs();
    let Some(turn) = start_turn((49160, 49179)) else {
        panic!("turnserver is not installed (apt-get install -y coturn)");
    };
    let (_service, base) = testkit::aiortc_service_or_skip!();
    let (ctx, mic, speaker) = context(relay_config(&base, &turn, "p"), 64);

    let started = Instant::now();
    let mut link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(20)).await;
    eprintln!(
        "relay-only connect via coturn: {} ms",
        started.elapsed().as_millis()
    );

    // Our offer held relay candidates only, so every packet went through coturn.
    let stats = fetch_stats(&base).await;
    let types = &stats["offers"][0]["candidate_types"];
    eprintln!("candidate types offered: {types}");
    let types = types.as_array().expect("candidate types");
    assert!(
        !types.is_empty() && types.iter().all(|t| t == "relay"),
        "{stats}"
    );
    // And the selected candidate pair is the relay, as the transport reports it.
    let log = logged();
    assert!(
        log.contains("rtc_aiortc_1 connected in") && log.contains("(local relay)"),
        "{log}"
    );

    match timeout(Duration::from_secs(5), link.events.recv()).await {
        Ok(Some(LinkEvent::Server(ServerEvent::SessionCreated { .. }))) => {}
        other => panic!(
            "expected session.created, got {other:?}; the service saw {}",
            fetch_stats(&base).await
        ),
    }
    link.commands
        .send(ClientEvent::SessionUpdate)
        .await
        .expect("send");
    match timeout(Duration::from_secs(5), link.events.recv()).await {
        Ok(Some(LinkEvent::Server(ServerEvent::SessionUpdated))) => {}
        other => panic!("expected session.updated, got {other:?}"),
    }

    play_tone_burst(mic, 1000, 1000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = analyse(&speaker.take());
    eprintln!("echo through the relay: {report:?}");
    assert!(report.peak_rms > 2000.0, "{report:?}");
    assert!((report.zero_crossing_hz - 440.0).abs() < 20.0, "{report:?}");
    drop(link.commands);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_turn_credential_fails_with_one_clear_line() {
    if testkit::rerun_alone!(
        wrong_turn_credential_fails_with_one_clear_line,
        Duration::from_secs(60)
    ) {
        return;
    }
    capture_logs();
    let Some(turn) = start_turn((49180, 49199)) else {
        panic!("turnserver is not installed (apt-get install -y coturn)");
    };
    // Nothing answers here: the call must fail before any offer is sent.
    let (ctx, _mic, _speaker) = context(relay_config("http://127.0.0.1:9/v1", &turn, "wrong"), 64);
    let started = Instant::now();
    let result = timeout(
        Duration::from_secs(20),
        webrtc::connect(&ctx, webrtc_dialect(&ctx), &Secret::new(TOKEN)),
    )
    .await
    .expect("connect is bounded");
    let err = match result {
        Ok(_) => panic!("a refused TURN credential cannot connect"),
        Err(e) => e,
    };
    eprintln!(
        "after {} ms: {}",
        started.elapsed().as_millis(),
        err.message
    );
    assert!(err.message.contains("TURN"), "{err:?}");
    assert!(
        !err.message.contains("wrong"),
        "no credential in errors: {err:?}"
    );
    assert!(!err.message.contains('\n'));
}
